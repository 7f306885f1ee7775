test_decode_DEPS := agent/content/json.c
