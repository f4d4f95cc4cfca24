#!/usr/bin/env bash
# Run the application benchmarks.
#   bench/run_apps.sh BUILD_DIR --check    every app at 1, 2 and 4 nodes x 1-2 threads,
#                                          then at a random shape (2-4 nodes x 1-2 threads,
#                                          printed), small sizes; fails unless every run
#                                          verifies (set FTSVM_CHECK_HOMES=y to compare
#                                          both homes at every barrier as well)
#   bench/run_apps.sh BUILD_DIR --under-load
#                                          every app at 4 nodes x 2 threads while two
#                                          busy loops load both cores; fails unless every
#                                          run verifies with no view change (no node
#                                          suspected by its heartbeats) and none fenced
#   bench/run_apps.sh BUILD_DIR --replicas [runs]
#                                          per app, time(FTSVM_REPLICAS=2) /
#                                          time(FTSVM_REPLICAS=1), 4 nodes, interleaved
#                                          runs (default 5), medians and geometric mean;
#                                          FTSVM_BENCH_BASE=OTHER_BUILD adds that build's
#                                          ratio, measured in the same interleaved runs
#   bench/run_apps.sh BUILD_DIR [runs]     figures: per app, the median time of `runs`
#                                          interleaved runs (default 5) as pthreads on one
#                                          process and on ftsvm at 1, 2 and 4 nodes
set -euo pipefail
build=${1:?usage: bench/run_apps.sh BUILD_DIR [--check | runs]}
mode=${2:-5}
run=$build/tools/ftsvm-run
export FTSVM_SHARED_SIZE=${FTSVM_SHARED_SIZE:-64M}
apps=(jacobi matmul lu mgs sort taskq)
# what the nodes said, for ci/check-log.sh (set by ci/test.sh)
keep_output() { [ -z "${TEST_NODE_OUTPUT_LOG:-}" ] || printf '%s\n' "$1" >>"$TEST_NODE_OUTPUT_LOG"; }
declare -A small=([jacobi]="128 10" [matmul]="64" [lu]="64 16" [mgs]="64 32"
                  [sort]="16384" [taskq]="256 100")

if [ "$mode" = --check ]; then
  failed=0 total=0
  for app in "${apps[@]}"; do
    shapes=("1 1" "1 2" "2 1" "2 2" "4 1" "4 2" "$((2 + RANDOM % 3)) $((1 + RANDOM % 2))")
    for shape in "${shapes[@]}"; do
      read -r nodes threads <<<"$shape"
      total=$((total + 1))
      # shellcheck disable=SC2086
      if out=$("$run" -n "$nodes" --threads "$threads" --timeout 120 \
               "$build/bench/$app" ${small[$app]} 2>&1) && keep_output "$out" &&
         grep -q 'verified yes' <<<"$out"; then
        echo "ok   $app on $nodes nodes x $threads threads"
      else
        echo "FAIL $app on $nodes nodes x $threads threads:"; echo "$out" | tail -5
        failed=$((failed + 1))
      fi
    done
  done
  echo "apps: $((total - failed)) passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
fi

if [ "$mode" = --under-load ]; then
  hogs=()
  stop_hogs() { for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done; }
  trap stop_hogs EXIT
  for _ in 1 2; do
    bash -c 'while :; do :; done' &
    hogs+=("$!")
  done
  failed=0 total=0
  for app in "${apps[@]}" "${apps[@]}"; do
    total=$((total + 1))
    out=$("$run" -n 4 --threads 2 --timeout 300 "$build/bench/$app" 2>&1) && rc=0 || rc=$?
    keep_output "$out"
    if [ "$rc" -eq 0 ] && grep -q 'verified yes' <<<"$out" &&
       ! grep -q 'ftsvm-event' <<<"$out"; then
      echo "ok   $app: $(sed -n 's/.* time \([0-9.]*\) s verified.*/\1 s/p' <<<"$out" | head -1), no suspicion"
    else
      echo "FAIL $app (exit $rc):"; echo "$out" | grep -v '^\[.\] app ' | tail -8
      failed=$((failed + 1))
    fi
  done
  echo "apps under load: $((total - failed)) passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
fi

time_of() { sed -n 's/.* time \([0-9.]*\) s verified yes.*/\1/p' | head -1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

if [ "$mode" = --replicas ]; then
  # FTSVM_BENCH_BASE=OTHER_BUILD: the same ratio of another build (the code
  # before a change), in the same interleaved runs
  runs=${3:-5}
  nodes=${FTSVM_BENCH_NODES:-4}
  base=${FTSVM_BENCH_BASE:-}
  builds=("$build") names=("")
  [ -z "$base" ] || { builds+=("$base"); names+=("base "); }
  printf '%-8s' app
  for name in "${names[@]}"; do printf ' %14s %14s %8s' "${name}1 home" "${name}2 homes" "${name}ratio"; done
  printf '   (%d nodes x 1 thread, median of %d interleaved runs)\n' "$nodes" "$runs"
  declare -A logsum worst
  for b in "${!builds[@]}"; do logsum[$b]=0; worst[$b]=0; done
  for app in "${apps[@]}"; do
    declare -A times=()
    for ((i = 0; i < runs; i++)); do
      for b in "${!builds[@]}"; do
        for r in 1 2; do
          # a run that did not verify (a node fenced on a loaded machine)
          # gives no time and is left out of the median
          times[$b.$r]+="$( (FTSVM_REPLICAS=$r "${builds[$b]}/tools/ftsvm-run" -n "$nodes" \
                             "${builds[$b]}/bench/$app" 2>/dev/null || true) | time_of) "
        done
      done
    done
    printf '%-8s' "$app"
    for b in "${!builds[@]}"; do
      m1=$(printf '%s\n' ${times[$b.1]} | median); m2=$(printf '%s\n' ${times[$b.2]} | median)
      ratio=$(awk -v a="$m2" -v c="$m1" 'BEGIN {printf "%.3f", a / c}')
      printf ' %12.4fs %12.4fs %7.3fx' "$m1" "$m2" "$ratio"
      logsum[$b]=$(awk -v s="${logsum[$b]}" -v r="$ratio" 'BEGIN {print s + log(r)}')
      worst[$b]=$(awk -v w="${worst[$b]}" -v r="$ratio" 'BEGIN {print (r > w) ? r : w}')
    done
    printf '\n'
    unset times
  done
  for b in "${!builds[@]}"; do
    awk -v s="${logsum[$b]}" -v n="${#apps[@]}" -v w="${worst[$b]}" -v name="${names[$b]}" \
      'BEGIN {printf "%sgeometric mean %.3fx, worst %.3fx\n", name, exp(s / n), w}'
  done
  exit
fi

runs=$mode
printf '%-8s %14s %14s %14s %14s %10s\n' app "pthreads x2" "ftsvm 1x2" "ftsvm 2x1" "ftsvm 4x1" "4x1/pthr"
for app in "${apps[@]}"; do
  p=() one=() two=() four=()
  for ((i = 0; i < runs; i++)); do   # interleaved, so that all see the same load
    p+=("$(FTSVM_THREADS=2 "$build/bench/${app}_pthreads" | time_of)")
    one+=("$("$run" -n 1 --threads 2 "$build/bench/$app" 2>/dev/null | time_of)")
    two+=("$("$run" -n 2 "$build/bench/$app" 2>/dev/null | time_of)")
    four+=("$("$run" -n 4 "$build/bench/$app" 2>/dev/null | time_of)")
  done
  mp=$(printf '%s\n' "${p[@]}" | median); m1=$(printf '%s\n' "${one[@]}" | median)
  m2=$(printf '%s\n' "${two[@]}" | median); m4=$(printf '%s\n' "${four[@]}" | median)
  printf '%-8s %12.4fs %12.4fs %12.4fs %12.4fs %9.1fx\n' "$app" "$mp" "$m1" "$m2" "$m4" \
    "$(awk -v a="$m4" -v b="$mp" 'BEGIN {print a / b}')"
done
