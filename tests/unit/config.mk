test_config_DEPS := agent/proxy/proxyhead.c agent/proxy/http.c agent/content/json.c $(WEBAPP_SRCS)
