test_answer_DEPS := agent/inspect.c agent/decode.c agent/json.c agent/providers.c agent/redact.c agent/vault.c $(WEBAPP_SRCS)
