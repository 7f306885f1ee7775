test_inflight_DEPS := agent/audit/spool.c
