test_ingest_DEPS := collector/chain.c collector/store.c collector/store_sqlite.c collector/store_clickhouse.c \
	collector/cmetrics.c collector/export.c collector/siem.c collector/enroll.c
