test_store_DEPS := collector/store_sqlite.c collector/store_clickhouse.c
test_store_DEPS += collector/chain.c collector/export.c collector/siem.c
