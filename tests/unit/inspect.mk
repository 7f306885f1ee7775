test_inspect_DEPS := agent/content/json.c agent/providers/providers.c agent/content/decode.c
