test_detok_DEPS := agent/content/json.c agent/content/redact.c agent/content/vault.c
