test_toolcall_DEPS := agent/content/json.c
