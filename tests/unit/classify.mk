test_classify_DEPS := agent/net/sni.c common/http.c agent/audit/reason.c
