test_classify_DEPS := agent/sni.c agent/http.c agent/reason.c
