test_webapps_DEPS := agent/content/json.c agent/providers/providers.c $(filter-out agent/providers/webapps.c,$(PROVIDER_SRCS))
