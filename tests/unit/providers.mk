test_providers_DEPS := agent/content/json.c $(PROVIDER_SRCS)
