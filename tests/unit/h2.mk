test_h2_DEPS := agent/proxy/http.c agent/content/json.c
