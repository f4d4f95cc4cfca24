#!/usr/bin/env bash
# Runs in a row over TCP between network namespaces (ftsvm-run --netns, so
# UCX_TLS=tcp,self): the liveness of a busy node and the survivors of a cut.
#   bench/tcp_runs.sh BUILD_DIR busy RUNS [ITERATIONS]
#       jacobi 512x512 on 4 nodes, failure-free (default 50 iterations): every
#       run must verify with no node removed (no view change, none fenced)
#   bench/tcp_runs.sh BUILD_DIR cut RUNS
#       4 nodes x 2 threads run an ftsvm_for loop and node 2 is cut off at
#       1.5 s: every run must see node 2 fence itself and the three survivors
#       finish and verify (none aborted, none removed)
# Stops at the first bad run and prints its output; prints each run's time
# (busy) or detection and failover times (cut), then the pass count.
set -uo pipefail
build=${1:?usage: bench/tcp_runs.sh BUILD_DIR busy|cut RUNS [ITERATIONS]}
mode=${2:?usage: bench/tcp_runs.sh BUILD_DIR busy|cut RUNS [ITERATIONS]}
runs=${3:?usage: bench/tcp_runs.sh BUILD_DIR busy|cut RUNS [ITERATIONS]}
iterations=${4:-50}
run=$build/tools/ftsvm-run

if [ "$(id -u)" != 0 ]; then
  echo "tcp_runs: --netns needs root: skipped"
  exit 0
fi

one_busy() {
  local out
  out=$("$run" -n 4 --netns --timeout 300 "$build/bench/jacobi" 512 "$iterations" 2>&1)
  local rc=$?
  if [ $rc -eq 0 ] && grep -q 'verified yes' <<<"$out" &&
     ! grep -q 'ftsvm-event view=\|ftsvm-event fenced' <<<"$out"; then
    echo "ok   $(grep -o 'time [0-9.]* s' <<<"$out")"
    return 0
  fi
  echo "FAIL (exit $rc)"
  echo "$out"
  return 1
}

one_cut() {
  local out
  out=$(FTSVM_SHARED_SIZE=16M "$run" -n 4 --threads 2 --netns --cut 2@1.5 --timeout 150 \
        "$build/test/for_node" items 1200 5,7 40000 2>&1)
  local rc=$?
  local summary
  summary=$(grep '^ftsvm-run: ' <<<"$out")
  if [ $rc -eq 0 ] && grep -q 'for_node: items verified on node' <<<"$out" &&
     grep -q 'node 2: exit 75, fenced, cut off' <<<"$summary" &&
     [ "$(grep -o 'node [013]: exit 0 ' <<<"$summary" | wc -l)" -eq 3 ]; then
    echo "ok   $(grep -o 'detection [0-9.]* ms, failover [0-9.]* ms' <<<"$summary")"
    return 0
  fi
  echo "FAIL (exit $rc)"
  echo "$out"
  return 1
}

passed=0
for ((i = 1; i <= runs; i++)); do
  printf 'run %d/%d: ' "$i" "$runs"
  case $mode in
    busy) one_busy ;;
    cut)  one_cut ;;
    *)    echo "unknown mode $mode"; exit 2 ;;
  esac || { echo "tcp_runs $mode: $passed of $runs in a row, then a failure"; exit 1; }
  passed=$((passed + 1))
done
echo "tcp_runs $mode: $passed of $runs in a row"
