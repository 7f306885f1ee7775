test_budget_DEPS := agent/policy/policy.c agent/content/json.c agent/providers/providers.c $(WEBAPP_SRCS)
