test_config_DEPS := agent/proxy/proxyhead.c common/http.c agent/content/json.c $(WEBAPP_SRCS)
