test_answer_DEPS := agent/content/inspect.c agent/content/decode.c agent/content/json.c agent/providers/providers.c agent/content/redact.c agent/content/vault.c
