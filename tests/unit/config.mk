test_config_DEPS := agent/proxy/proxyhead.c agent/proxy/http.c
