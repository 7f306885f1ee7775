test_audit_DEPS := agent/spool.c agent/ship.c agent/inflight.c
