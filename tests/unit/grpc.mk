test_grpc_DEPS := agent/content/protowalk.c agent/content/decode.c agent/content/json.c
