test_mcplaunch_DEPS := agent/content/inspect.c agent/content/validators.c agent/content/detectors.c agent/content/json.c agent/providers/providers.c agent/content/decode.c $(PROVIDER_SRCS)
