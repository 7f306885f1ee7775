test_config_DEPS := agent/proxyhead.c agent/http.c agent/json.c $(WEBAPP_SRCS)
