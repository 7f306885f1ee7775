test_h2_DEPS := agent/http.c agent/json.c
