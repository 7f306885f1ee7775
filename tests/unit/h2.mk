test_h2_DEPS := common/http.c agent/content/json.c
