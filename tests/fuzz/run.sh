#!/usr/bin/env bash
# Builds every libFuzzer target tests/fuzz/fuzz_NAME.c (sources to link in
# tests/fuzz/NAME.deps) with clang, ASan and UBSan, and runs each for
# FUZZ_SECONDS seconds (default 60) over tests/fuzz/corpus/NAME (crash
# reproducers found earlier live there too and are replayed first).
# Prints "PASS fuzz_NAME" / "FAIL fuzz_NAME: why" for tests/run.sh.
# Usage: tests/fuzz/run.sh [NAME...]
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
secs=${FUZZ_SECONDS:-60}
out=$BUILD/fuzz
mkdir -p "$out"
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
	for f in tests/fuzz/fuzz_*.c; do n=$(basename "$f" .c); names+=("${n#fuzz_}"); done
fi
# (the engine's target links the agent's own libraries, @BUILD@/lib*.a, and what they use)
pkgs="libhs openssl yaml-0.1 libzstd libprotobuf-c zlib libbrotlidec libbrotlienc libnghttp2 \
	libbpf libnl-3.0 libnl-idiag-3.0 sqlite3 libcurl"
rc=0
for n in "${names[@]}"; do
	deps=$(sed "s|@BUILD@|$BUILD|g" "tests/fuzz/$n.deps" 2>/dev/null)
	bin=$out/fuzz_$n
	if ! clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-D_GNU_SOURCE -Iagent -Icommon -Ibpf -I"$BUILD" -I"$BUILD/gen" $(pkg-config --cflags $pkgs) \
		"tests/fuzz/fuzz_$n.c" $deps -o "$bin" $(pkg-config --libs $pkgs) -lresolv -lpthread -lm -lstdc++ \
		>"$out/fuzz_$n.build.log" 2>&1; then
		echo "FAIL fuzz_$n: does not build (see $out/fuzz_$n.build.log)"
		rc=1
		continue
	fi
	t=$secs
	# A target with a slow start (compiling the detector database) gets the
	# smoke time it needs to run at all.
	if [ -f "tests/fuzz/$n.smoke_secs" ] && [ "$(cat "tests/fuzz/$n.smoke_secs")" -gt "$t" ]; then
		t=$(cat "tests/fuzz/$n.smoke_secs")
	fi
	corpus=tests/fuzz/corpus/$n
	work=$out/corpus-$n
	mkdir -p "$work"
	[ -d "$corpus" ] && cp -n "$corpus"/* "$work"/ 2>/dev/null
	if "$bin" -max_total_time="$t" -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$out/crash-$n-" -print_final_stats=1 \
		"$work" >"$out/fuzz_$n.log" 2>&1; then
		echo "PASS fuzz_$n ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$out/fuzz_$n.log" | grep -o '[0-9]*' || echo ?) runs in ${t}s)"
	else
		echo "FAIL fuzz_$n: crash or leak; reproducer under $out/crash-$n-*, log $out/fuzz_$n.log"
		rc=1
	fi
done
exit $rc
