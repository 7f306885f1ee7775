test_providers_DEPS := agent/json.c $(WEBAPP_SRCS)
