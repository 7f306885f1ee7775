test_redact_DEPS := agent/json.c agent/providers.c agent/inspect.c agent/decode.c
