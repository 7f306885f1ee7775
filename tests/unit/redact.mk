test_redact_DEPS := agent/content/json.c agent/providers/providers.c agent/content/inspect.c agent/content/validators.c agent/content/detectors.c agent/content/vault.c agent/content/decode.c
