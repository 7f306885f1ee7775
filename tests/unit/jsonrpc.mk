test_jsonrpc_DEPS := agent/json.c agent/sse.c
