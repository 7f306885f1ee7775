test_budget_DEPS := agent/policy.c agent/json.c agent/providers.c $(WEBAPP_SRCS)
