test_audit_DEPS := agent/audit/spool.c agent/audit/ship.c agent/audit/inflight.c
