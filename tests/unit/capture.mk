test_capture_DEPS := agent/sockdiag.c
