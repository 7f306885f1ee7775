test_policy_DEPS := agent/json.c agent/providers.c $(WEBAPP_SRCS)
