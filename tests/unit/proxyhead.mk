test_proxyhead_DEPS := agent/http.c
