#!/usr/bin/env bash
# Part of make test: the programs behind `make eval` and `make bench` still
# build against the current modules (built with their own scripts in
# build-only mode; not run here: they measure, and take minutes). A refactor
# that breaks them fails the test run instead of surfacing at the next
# measurement. Prints one PASS/FAIL line each. bench_inspect is left out:
# it needs PCRE2, a bench-only dependency.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
out=$BUILD/test-logs
mkdir -p "$out"
rc=0
for s in eval:tests/eval/run.sh pipeline_bench:tests/bench/pipeline_bench.sh \
	 collector_bench:tests/bench/collector_bench.sh; do
	name=${s%%:*} script=${s#*:}
	if VIGIL_BUILD_ONLY=1 bash "$script" >"$out/build-$name.log" 2>&1; then
		echo "PASS ${name}_builds"
	else
		echo "FAIL ${name}_builds: $script does not build (see $out/build-$name.log)"
		rc=1
	fi
done
exit $rc
