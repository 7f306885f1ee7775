test_decode_DEPS := agent/json.c
