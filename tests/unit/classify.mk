test_classify_DEPS := agent/net/sni.c agent/proxy/http.c agent/audit/reason.c
