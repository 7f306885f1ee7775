# test_certgen also covers the upstream side (agent/tls.c).
test_certgen_DEPS := agent/tls.c
