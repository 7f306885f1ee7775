test_providers_DEPS := agent/content/json.c $(WEBAPP_SRCS)
