test_jsonrpc_DEPS := agent/content/json.c agent/proxy/sse.c
