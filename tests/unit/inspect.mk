test_inspect_DEPS := agent/content/validators.c agent/content/detectors.c agent/content/json.c agent/providers/providers.c agent/content/decode.c $(PROVIDER_SRCS)
