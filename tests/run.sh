#!/usr/bin/env bash
# Runs every unit test binary (build/tests/test_*) and every end-to-end test
# (tests/e2e/test_*.py). Each prints "PASS name" / "FAIL name: why" lines; a
# binary that crashes or exits non-zero without a FAIL line counts as one
# failure. Ends with "N passed, N failed" and exits non-zero on any failure.
# VIGIL_ONLY=unit|e2e|tools|fuzz restricts the run; VIGIL_TEST=substring filters files;
# VIGIL_FUZZ_SMOKE=0 leaves the fuzz smoke out of a full run.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
mkdir -p "$BUILD"
BUILD=$(cd "$BUILD" && pwd)
export BUILD
only=${VIGIL_ONLY:-all}
filter=${VIGIL_TEST:-}
passed=0 failed=0
logdir=$BUILD/test-logs
mkdir -p "$logdir"

run_one() {
	local name=$1; shift
	local out="$logdir/$name.log" rc p f
	printf '== %s\n' "$name"
	timeout --kill-after=10 "${VIGIL_TEST_TIMEOUT:-600}" "$@" >"$out" 2>&1
	rc=$?
	grep -E '^(PASS|FAIL) ' "$out"
	p=$(grep -c '^PASS ' "$out")
	f=$(grep -c '^FAIL ' "$out")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "FAIL $name: exited with status $rc; last lines of $out:"
		tail -n 20 "$out" | sed 's/^/    /'
		f=1
	elif [ "$f" -gt 0 ]; then
		echo "   (log: $out)"
	fi
	passed=$((passed + p)); failed=$((failed + f))
}

if [ "$only" = all ] || [ "$only" = unit ]; then
	for t in "$BUILD"/tests/test_*; do
		[ -x "$t" ] || continue
		case "$t" in *"$filter"*) ;; *) continue ;; esac
		run_one "$(basename "$t")" "$t"
	done
fi
if [ "$only" = all ] || [ "$only" = e2e ]; then
	for t in tests/e2e/test_*.py; do
		[ -f "$t" ] || continue
		case "$t" in *"$filter"*) ;; *) continue ;; esac
		run_one "$(basename "$t" .py)" python3 "$t"
	done
fi
if [ "$only" = all ] || [ "$only" = tools ]; then
	case "tools" in *"$filter"*) run_one tools-build bash tests/tools_build.sh ;; esac
fi
if { [ "$only" = all ] && [ "${VIGIL_FUZZ_SMOKE:-1}" != 0 ]; } || [ "$only" = fuzz ]; then
	# A short smoke run of every fuzz target (make fuzz runs them longer).
	case "fuzz" in *"$filter"*) FUZZ_SECONDS=${VIGIL_FUZZ_SECONDS:-5} run_one fuzz-smoke bash tests/fuzz/run.sh ;; esac
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
