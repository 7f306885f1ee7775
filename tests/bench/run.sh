#!/usr/bin/env bash
# Vigil benchmarks (`make bench`; not part of `make test`).
#
# Owns: running the proxy comparison (tests/bench/proxy_bench.py: direct vs
# nginx vs mitmdump vs the agent, see its header), the inspection and policy
# micro-benchmarks (bench_inspect.c, bench_policy.c, built here with one gcc
# line against the agent's objects), the audit pipeline and collector
# benchmarks (pipeline_bench.sh, collector_bench.sh), the first-flight guard's
# cost on non-LLM traffic (guard_bench.py with its driver guard_bench.c),
# the web console's events view over 1M events (console_bench.py), one
# Realtime WebSocket message through the agent vs direct (ws_bench.py),
# and HTTP/2 beside nginx's HTTP/2 proxy (h2_bench.py).
# Must never: install anything (make
# bench runs scripts/deps.sh first), or fail because a performance target is
# missed: targets print PASS/MISS; the exit status is non-zero only when a
# measurement could not be taken.
#
# Environment: BUILD (default build/) selects the binaries, as for the e2e
# tests; BENCH_ARGS passes options to proxy_bench.py (e.g. "--duration 5"),
# GUARD_BENCH_ARGS to guard_bench.py (e.g. "--conns 1000 --rounds 2"),
# H2_BENCH_ARGS to h2_bench.py (e.g. "--duration 5 --streams 4").
set -uo pipefail
cd "$(dirname "$0")/../.."
export BUILD="${BUILD:-$PWD/build}"
case "$BUILD" in /*) ;; *) BUILD="$PWD/$BUILD" ;; esac

if [ "$(id -u)" -ne 0 ]; then
	echo "bench: needs root (BPF, cgroups, mount namespaces, port 443)" >&2
	exit 1
fi
for t in nginx wrk h2load python3 unshare; do
	command -v "$t" >/dev/null || { echo "bench: $t missing (run scripts/deps.sh bench)" >&2; exit 1; }
done
# 500 idle connections through a proxy need ~1000 descriptors in the proxy.
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true

rc=0
# Micro-benchmarks of one module each, linked against the agent's objects.
pkgs="libbpf openssl libhs libprotobuf-c libnl-3.0 libnl-idiag-3.0 libzstd yaml-0.1 sqlite3 libcurl libpcre2-8 zlib libbrotlidec libbrotlienc"
for name in bench_inspect bench_policy; do
	src=tests/bench/$name.c
	[ -f "$src" ] || { echo "bench: $src absent; skipped"; continue; }
	echo "== $name ($src)"
	# shellcheck disable=SC2046
	if gcc -std=gnu11 -D_GNU_SOURCE -O2 -Wall -Wextra -Iagent -Icommon -I"$BUILD" -I"$BUILD/gen" \
		"$src" "$BUILD/libagent.a" "$BUILD/libcommon.a" -o "$BUILD/$name" \
		$(pkg-config --cflags --libs $pkgs) -lresolv -lpthread -lm; then
		"$BUILD/$name" || { echo "bench: $name exited $?" >&2; rc=1; }
	else
		echo "bench: $src did not build" >&2
		rc=1
	fi
	echo
done

# The audit pipeline (agent -> collector) and the collector's stores.
for script in tests/bench/pipeline_bench.sh tests/bench/collector_bench.sh; do
	[ -f "$script" ] || continue
	echo "== $script"
	bash "$script" || rc=1
	echo
done

# The web console's events view over 1M SQLite events (headless chromium).
echo "== tests/bench/console_bench.py"
python3 tests/bench/console_bench.py || rc=1
echo

# One Realtime (WebSocket) message through the agent vs direct.
echo "== tests/bench/ws_bench.py"
python3 tests/bench/ws_bench.py || rc=1
echo

# The first-flight guard on non-LLM traffic, guard off vs on (real BPF);
# GUARD_BENCH_ARGS="--old-build DIR" adds an earlier design for comparison.
echo "== tests/bench/guard_bench.py"
if gcc -std=gnu11 -D_GNU_SOURCE -O2 -Wall -Wextra tests/bench/guard_bench.c -o "$BUILD/guard_bench"; then
	# shellcheck disable=SC2086
	python3 tests/bench/guard_bench.py ${GUARD_BENCH_ARGS:-} || rc=1
else
	echo "bench: tests/bench/guard_bench.c did not build" >&2
	rc=1
fi
echo

# shellcheck disable=SC2086
python3 tests/bench/proxy_bench.py ${BENCH_ARGS:-} || rc=1

# HTTP/2: h2load (h2 only) against the agent and nginx's HTTP/2 proxy.
echo "== tests/bench/h2_bench.py"
# shellcheck disable=SC2086
python3 tests/bench/h2_bench.py ${H2_BENCH_ARGS:-} || rc=1
exit $rc
