#!/usr/bin/env bash
# Build the libFuzzer target for the diff decoder with clang and run it:
#   ci/fuzz.sh OUT_DIR [runs]     (default 200000 runs; exit non-zero on a crash)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: ci/fuzz.sh OUT_DIR [runs]}
runs=${2:-200000}
cc=$(command -v clang-14 || command -v clang || true)
if [ -z "$cc" ]; then
  echo "ci/fuzz.sh: clang is missing (ci/deps.sh installs clang-14 and libclang-rt-14-dev)" >&2
  exit 1
fi
mkdir -p "$out/fuzz-corpus"
"$cc" -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -I"$src/include" -I"$src/lib" \
  -o "$out/fuzz_diff" "$src/test/fuzz/fuzz_diff.c" "$src/lib/hlrc/diff.c"
# seed: an empty diff and a one-run diff
printf '\0\0' > "$out/fuzz-corpus/empty"
printf '\1\0\4\0\3\0abc' > "$out/fuzz-corpus/one-run"
"$out/fuzz_diff" -runs="$runs" -max_len=12000 "$out/fuzz-corpus" 2>&1 | tail -3
