#!/usr/bin/env bash
# The README's second command: install what is missing, build, and run the
# whole test suite; then build again with AddressSanitizer and
# UndefinedBehaviorSanitizer and run the unit and transport tests under them.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh

# mpirun refuses root unless told; CI and containers run as root
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

echo "== build"
ci/build.sh build
echo "== tests"
(cd build && ctest --output-on-failure)

echo "== sanitizer build"
ci/build.sh build-asan -DFTSVM_SANITIZE=ON
echo "== unit and transport tests under ASan + UBSan"
export ASAN_OPTIONS=abort_on_error=0:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
(cd build-asan && ctest --output-on-failure -L 'unit|transport')
