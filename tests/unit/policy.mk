test_policy_DEPS := agent/content/json.c agent/providers/providers.c $(WEBAPP_SRCS)
