# test_certgen also covers the upstream side (agent/net/tls.c).
test_certgen_DEPS := agent/net/tls.c
