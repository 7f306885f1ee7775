test_egress_DEPS := agent/capture.c agent/sockdiag.c agent/loop.c agent/targets.c agent/proxyhead.c agent/http.c
