test_proxyhead_DEPS := common/http.c
