test_store_DEPS := collector/store_sqlite.c collector/store_clickhouse.c
