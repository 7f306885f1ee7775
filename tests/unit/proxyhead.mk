test_proxyhead_DEPS := agent/proxy/http.c
