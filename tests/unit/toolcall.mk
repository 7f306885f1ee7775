test_toolcall_DEPS := agent/json.c
