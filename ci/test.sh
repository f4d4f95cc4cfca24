#!/usr/bin/env bash
# The README's second command: install what is missing, build, and run the
# whole test suite; then build again with AddressSanitizer and
# UndefinedBehaviorSanitizer and run the unit, transport, shared-memory, failure and app tests
# under them; then the Slurm stage (ci/test-slurm.sh: a one-machine Slurm
# cluster, srun and sbatch, a task killed); then the soft-RoCE stage (ci/test-softroce.sh): a QEMU guest
# with the kernel's rdma_rxe runs the transport and protocol tests over
# verbs and over UCX on rxe0.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh

# mpirun refuses root unless told; CI and containers run as root
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

log=$(mktemp)
# every node's output in the suite (test/multi/run_util.h), read at the end
export TEST_NODE_OUTPUT_LOG=$(mktemp)
trap 'rm -f "$log" "$TEST_NODE_OUTPUT_LOG"' EXIT
# ctest closes with "N% tests passed, F tests failed out of T"
count() { sed -n 's/.* \([0-9]*\) tests failed out of \([0-9]*\)$/\1 \2/p' "$log" | tail -1; }

echo "== build"
ci/build.sh build
echo "== tests"
# a failed stage does not stop the next ones: the summary counts them all
(cd build && ctest --output-on-failure) 2>&1 | tee "$log" || true
read -r failed1 total1 < <(count)
# a ctest that never summed up counts as one failure
failed1=${failed1:-1} total1=${total1:-1}

echo "== sanitizer build"
ci/build.sh build-asan -DFTSVM_SANITIZE=ON
echo "== unit, transport, shared-memory, failure and app tests under ASan + UBSan"
export ASAN_OPTIONS=abort_on_error=0:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
(cd build-asan && ctest --output-on-failure -L 'unit|transport|svm|replica|failure|apps') 2>&1 | tee "$log" || true
read -r failed2 total2 < <(count)
failed2=${failed2:-1} total2=${total2:-1}

echo "== Slurm: start, apps and killed tasks under srun --mpi=pmix and sbatch"
ci/test-slurm.sh build 2>&1 | tee "$log" || true
read -r passed5 failed5 < <(sed -n 's/^slurm: \([0-9]*\) passed, \([0-9]*\) failed.*$/\1 \2/p' "$log" | tail -1)
passed5=${passed5:-0} failed5=${failed5:-1}

echo "== soft-RoCE: transport and protocol tests over rdma_rxe in a QEMU guest, on verbs and on UCX"
SOFTROCE_TRANSPORTS=${SOFTROCE_TRANSPORTS:-ucx-rxe verbs} ci/test-softroce.sh build 2>&1 | tee "$log" || true
read -r passed3 failed3 < <(sed -n 's/^softroce: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$log" | tail -1)
# a stage that never reported counts as one failure
passed3=${passed3:-0} failed3=${failed3:-1}

echo "== what the nodes of the suite said: no broken promise"
failed4=0
ci/check-log.sh "$TEST_NODE_OUTPUT_LOG" || failed4=1

failed=$((failed1 + failed2 + failed4))
echo "ctest: $((total1 + total2 - failed1 - failed2)) passed, $((failed1 + failed2)) failed"
echo "check-log: $((1 - failed4)) passed, $failed4 failed"
echo "slurm: $passed5 passed, $failed5 failed"
echo "softroce: $passed3 passed, $failed3 failed"
failed=$((failed + failed3 + failed5))
echo "all: $((total1 + total2 - failed1 - failed2 + 1 - failed4 + passed3 + passed5)) passed, $failed failed"
[ "$failed" -eq 0 ]
