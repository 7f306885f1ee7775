test_policy_DEPS := agent/policy/load.c agent/policy/eval.c agent/content/json.c agent/providers/providers.c $(PROVIDER_SRCS)
