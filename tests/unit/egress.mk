test_egress_DEPS := agent/kernel/capture.c agent/kernel/sockdiag.c common/loop.c agent/kernel/targets.c agent/proxy/proxyhead.c common/http.c
