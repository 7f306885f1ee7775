#!/usr/bin/env bash
# Builds and runs tests/bench/collector_bench.c (collector ingest rate and
# SOC query latency; see its header). Usage: tests/bench/collector_bench.sh
# [--events N] [--store-events N] [--no-clickhouse] [--remote IP PORT DIR BASE]. BUILD as for the tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD="${BUILD:-build}"
pkgs="libbpf openssl libhs libprotobuf-c libnl-3.0 libnl-idiag-3.0 libzstd yaml-0.1 sqlite3 libcurl"
out="$BUILD/collector_bench"
san=; [ "${SAN:-}" = 1 ] && san="-fsanitize=address,undefined"
# shellcheck disable=SC2046,SC2086
gcc $san -std=gnu11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Wno-unused-parameter -Wno-format-truncation -Icommon -Icollector -I"$BUILD" -I"$BUILD/gen" \
	tests/bench/collector_bench.c collector/ingest.c collector/store.c collector/store_sqlite.c \
	collector/store_clickhouse.c collector/chain.c collector/cmetrics.c collector/export.c collector/siem.c collector/enroll.c \
	"$BUILD/libcommon.a" -o "$out" $(pkg-config --cflags --libs $pkgs) -lpthread -lm
[ -n "${VIGIL_BUILD_ONLY:-}" ] && exit 0   # make test checks that it still builds
exec "$out" "$@"
