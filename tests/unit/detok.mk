test_detok_DEPS := agent/json.c agent/redact.c agent/vault.c
