test_inflight_DEPS := agent/spool.c
