test_inspect_DEPS := agent/json.c agent/providers.c agent/decode.c $(WEBAPP_SRCS)
