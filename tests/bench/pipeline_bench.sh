#!/usr/bin/env bash
# Audit pipeline benchmark (`make bench` part; run by tests/bench/run.sh).
#
# Measures, against the real vigil-collector (SQLite store) on loopback with
# mutual TLS: events per second from audit_emit() to committed-at-collector
# (acked), bytes per event on the wire after zstd (target: < 200 for a
# typical request event), CPU per event in the agent (the emitting thread =
# hot-path cost; the whole process incl. the shipper) and in the collector.
# Builds tests/bench/pipeline_bench.c with one gcc line against
# $BUILD/libagent.a and $BUILD/libcommon.a. Must never fail on a missed
# target (prints PASS/MISS); non-zero only if a measurement failed.
#
# Environment: BUILD (default build/), PIPE_EVENTS (default 50000),
# PIPE_FSYNC (default batch).
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD="${BUILD:-$PWD/build}"
case "$BUILD" in /*) ;; *) BUILD="$PWD/$BUILD" ;; esac
N="${PIPE_EVENTS:-50000}"
FSYNC="${PIPE_FSYNC:-batch}"
COL="$BUILD/vigil-collector"
[ -x "$COL" ] || { echo "pipeline_bench: $COL not built" >&2; exit 1; }

tmp=$(mktemp -d /tmp/vigil-pipebench-XXXXXX)
colpid=
cleanup() {
	[ -n "$colpid" ] && kill "$colpid" 2>/dev/null && wait "$colpid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

pkgs="libbpf openssl libhs libprotobuf-c libnl-3.0 libnl-idiag-3.0 libzstd yaml-0.1 sqlite3 libcurl"
drv="$BUILD/pipeline_bench"
san=; [ "${SAN:-}" = 1 ] && san="-fsanitize=address,undefined"
# shellcheck disable=SC2046,SC2086
if ! gcc $san -std=gnu11 -D_GNU_SOURCE -O2 -Wall -Wextra -Iagent -Icommon -I"$BUILD" -I"$BUILD/gen" \
	tests/bench/pipeline_bench.c "$BUILD/libagent.a" "$BUILD/libcommon.a" -o "$drv" \
	$(pkg-config --cflags --libs $pkgs) -lresolv -lpthread -lm; then
	echo "pipeline_bench: driver did not build" >&2
	exit 1
fi
[ -n "${VIGIL_BUILD_ONLY:-}" ] && exit 0   # make test checks that it still builds

port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
api=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$COL" pki init --dir "$tmp/pki" --name 127.0.0.1 --name localhost >/dev/null || exit 1
cat >"$tmp/collector.yaml" <<EOF
listen: 127.0.0.1:$port
api: 127.0.0.1:$api
store: sqlite:$tmp/store.db
tls_cert: $tmp/pki/server.crt
tls_key: $tmp/pki/server.key
client_ca: $tmp/pki/ca.crt
tokens:
  - {token: pipeline-bench-token-0123456789, role: analyst, name: bench}
log_level: warning
EOF
"$COL" enroll --agent-id bench-agent --out "$tmp/agent" --config "$tmp/collector.yaml" >/dev/null || exit 1
"$COL" --config "$tmp/collector.yaml" >"$tmp/collector.log" 2>&1 &
colpid=$!
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
	sleep 0.05
done

col_cpu() {   # utime + stime of the collector, in clock ticks
	awk '{print $14 + $15}' "/proc/$colpid/stat"
}
hz=$(getconf CLK_TCK)
c0=$(col_cpu)
echo "== pipeline: $N typical request events, spool_fsync $FSYNC, audit_emit -> spool -> zstd/mTLS -> vigil-collector (sqlite) -> ack"
line=$("$drv" "$tmp/spool" "127.0.0.1:$port" "$tmp/agent" bench-agent "$N" "$FSYNC" 2>"$tmp/driver.log")
drc=$?
c1=$(col_cpu)
echo "$line"
if [ $drc -ne 0 ] || [ -z "$line" ]; then
	echo "pipeline_bench: not every event was acknowledged (driver exit $drc)" >&2
	tail -5 "$tmp/driver.log" >&2
	tail -5 "$tmp/collector.log" >&2
	exit 1
fi
get() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" <<<"$line"; }
wire=$(get wire_bytes_per_event)
col_us=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" -v n="$N" 'BEGIN{printf "%.2f", (b - a) * 1e6 / hz / n}')
echo "collector_cpu_us_per_event=$col_us"
printf '  %-44s %s\n' "events/s emit -> committed at collector" "$(get e2e_per_s)"
printf '  %-44s %s\n' "audit_emit() rate (hot path, events/s)" "$(get emit_per_s)"
printf '  %-44s %s\n' "CPU per event, emitting thread (us)" "$(get emit_cpu_us_per_event)"
printf '  %-44s %s\n' "CPU per event, agent process (us)" "$(get agent_cpu_us_per_event)"
printf '  %-44s %s\n' "CPU per event, collector (us)" "$col_us"
printf '  %-44s %s\n' "bytes per event on the wire (zstd)" "$wire"
printf '  %-44s %s\n' "bytes per event before zstd" "$(get raw_bytes_per_event)"
if awk -v w="$wire" 'BEGIN{exit !(w < 200)}'; then
	echo "PASS wire bytes per typical request event < 200 ($wire)"
else
	echo "MISS wire bytes per typical request event < 200 ($wire)"
fi
exit 0
