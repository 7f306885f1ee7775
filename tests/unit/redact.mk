test_redact_DEPS := agent/json.c agent/providers.c agent/inspect.c agent/vault.c agent/decode.c $(WEBAPP_SRCS)
