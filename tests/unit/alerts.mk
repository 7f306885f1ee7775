test_alerts_DEPS := collector/store.c collector/store_sqlite.c collector/store_clickhouse.c
