test_capture_DEPS := agent/kernel/sockdiag.c
