test_vault_DEPS := agent/content/json.c
