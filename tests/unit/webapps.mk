test_webapps_DEPS := agent/json.c agent/providers.c $(filter-out agent/webapps.c,$(WEBAPP_SRCS))
