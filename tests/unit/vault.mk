test_vault_DEPS := agent/json.c
