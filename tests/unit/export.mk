test_export_DEPS := collector/store.c collector/store_sqlite.c collector/store_clickhouse.c
test_export_DEPS += collector/siem.c
