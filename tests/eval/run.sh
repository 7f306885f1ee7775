#!/usr/bin/env bash
# make eval: precision/recall of the detectors on the public labeled data
# in ../shared/eval (referenced, never copied). Builds the small C driver
# (tests/eval/eval.c + the inspection modules) and lets run.py score it.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
DATA=${VIGIL_EVAL_DATA:-../shared/eval}
mkdir -p "$BUILD/eval"
san=; [ "${SAN:-}" = 1 ] && san="-fsanitize=address,undefined"
# shellcheck disable=SC2086
${CC:-gcc} $san -std=gnu11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter \
	-Wshadow -Wformat=2 -Iagent -Icommon $(pkg-config --cflags libhs) \
	tests/eval/eval.c agent/content/inspect.c agent/content/validators.c agent/content/detectors.c agent/content/decode.c agent/content/json.c agent/providers/*.c "$BUILD/libcommon.a" \
	-o "$BUILD/eval/eval" $(pkg-config --libs libhs zlib libbrotlidec libzstd) -lm
[ -n "${VIGIL_BUILD_ONLY:-}" ] && exit 0   # make test checks that it still builds
if [ ! -d "$DATA" ]; then
	echo "eval: data directory $DATA not found (set VIGIL_EVAL_DATA)" >&2
	exit 2
fi
VIGIL_EVAL_DATA="$DATA" python3 tests/eval/run.py "$BUILD/eval/eval"
# Generated pasted content with planted values and look-alikes (seeded;
# VIGIL_GEN_SEED replays a run, the seed is printed with the numbers).
python3 tests/eval/gen.py "$BUILD/eval/eval"
