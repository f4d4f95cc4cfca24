#!/usr/bin/env bash
# The Slurm stage: ftsvm started by a real one-machine Slurm cluster
# (ci/slurm) through PMIx, on an already built tree.
#
#   ci/build.sh build && ci/test-slurm.sh [BUILD_DIR]      (default: build)
#
#   start    srun --mpi=pmix -n 3 of the ring demo: every task verifies;
#   apps     the six apps at 2 and 4 tasks x 1 and 2 threads, small sizes:
#            every run verifies;
#   failure  a task SIGKILLs itself in the middle of jacobi (FTSVM_FAULT), at
#            4 tasks and at 8 (1024 x 1024),
#            and another run's task is SIGKILLed from outside by its pid:
#            the step is not cancelled, the survivors finish and verify,
#            srun names the killed task and exits 137;
#   start-up a task SIGKILLs itself at each step of start-up (FTSVM_FAULT
#            boot-rendezvous, boot-addresses, boot-keys, boot-barrier) on 3
#            and on 4 tasks, node 0 among the victims: the others start
#            without it (it is absent from view 0), run the app and verify,
#            as in check_failure;
#   sbatch   examples/ftsvm.sbatch through sbatch --wait with a task killed:
#            the same.
# The cluster is started if it is not running and then stopped again (by
# pid). The last line is "slurm: N passed, M failed"; the exit status is 0
# only if nothing failed. Needs root.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
build=${1:-build}
passed=0 failed=0

ok()  { echo "slurm: ok   $*"; passed=$((passed + 1)); }
bad() { echo "slurm: FAIL $*"; failed=$((failed + 1)); }
# what the nodes said, for ci/check-log.sh (set by ci/test.sh)
keep_output() { [ -z "${TEST_NODE_OUTPUT_LOG:-}" ] || cat "$1" >>"$TEST_NODE_OUTPUT_LOG"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "slurm: needs root (the daemons run as root)"
  echo "slurm: 0 passed, 1 failed"
  exit 1
fi
started=0
dir=${SLURM_DIR:-/tmp/ftsvm-slurm}
if ! { [ -f "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; }; then
  started=1
fi
if ! ci/slurm start; then
  echo "slurm: 0 passed, 1 failed (the cluster did not start)"
  [ $started = 1 ] && ci/slurm stop
  exit 1
fi
[ $started = 1 ] && trap 'ci/slurm stop' EXIT
eval "$(ci/slurm env)"
export FTSVM_SHARED_SIZE=64M
out=$(mktemp)
trap 'rm -f "$out"; [ $started = 1 ] && ci/slurm stop' EXIT

# ---- start ------------------------------------------------------------------
if timeout 120 srun --mpi=pmix -n 3 "$build/examples/ring" >"$out" 2>&1 &&
   [ "$(grep -c 'node [0-9]: verified' "$out")" = 3 ]; then
  ok "start: ring on 3 tasks, every task verified"
else
  bad "start: ring on 3 tasks"; tail -5 "$out"
fi

# ---- apps -------------------------------------------------------------------
declare -A small=([jacobi]="128 10" [matmul]="64" [lu]="64 16" [mgs]="64 32"
                  [sort]="16384" [taskq]="256 100")
for app in jacobi matmul lu mgs sort taskq; do
  for shape in "2 1" "2 2" "4 1" "4 2"; do
    read -r tasks threads <<<"$shape"
    # shellcheck disable=SC2086
    if FTSVM_THREADS=$threads timeout 120 srun --mpi=pmix -n "$tasks" \
         "$build/bench/$app" ${small[$app]} >"$out" 2>&1 && grep -q 'verified yes' "$out"; then
      keep_output "$out"
      ok "apps: $app on $tasks tasks x $threads threads"
    else
      bad "apps: $app on $tasks tasks x $threads threads"; tail -5 "$out"
    fi
  done
done

# ---- failure ----------------------------------------------------------------
# one killed task (TASK of TASKS, default 1 of 4): srun says so and exits
# 137, the step was not cancelled, that node was removed, the survivors'
# result verified and the lowest survivor summed up the job
check_failure() {
  local what=$1 rc=$2 tasks=${3:-4} task=${4:-1}
  if [ "$rc" = 137 ] && grep -q "task $task: Killed" "$out" &&
     ! grep -q 'CANCELLED' "$out" && grep -q "removed=$task" "$out" &&
     grep -q 'verified yes' "$out" && ! grep -q 'tasks\? [0-9,-]*: Exited with exit code' "$out" &&
     grep -q "ftsvm: job of $tasks nodes: $((tasks - 1)) finished; node $task failed" "$out"; then
    keep_output "$out"
    ok "$what: task $task of $tasks killed, srun exit 137, survivors verified ($(grep -o 'recovered [0-9.]* ms' "$out" | head -1))"
  else
    bad "$what (srun exit $rc)"; grep -v ' debug: ' "$out" | tail -12
  fi
}

FTSVM_FAULT=for-chunk:20@1 timeout 150 srun --mpi=pmix -n 4 "$build/bench/jacobi" 512 200 \
  >"$out" 2>&1
check_failure "failure: FTSVM_FAULT under srun" $?

# at a size users run: 8 tasks, 1024 x 1024 (bands of about 1 MB per
# interval), task 5 killed
FTSVM_FAULT=for-chunk:10@5 FTSVM_SHARED_SIZE=256M timeout 300 srun --mpi=pmix -n 8 \
  "$build/bench/jacobi" 1024 60 >"$out" 2>&1
check_failure "failure: FTSVM_FAULT under srun, 8 tasks" $? 8 5

# the same with a SIGKILL from outside: the task of rank 1, found by its
# environment among the processes this srun started
timeout 150 srun --mpi=pmix -n 4 "$build/bench/jacobi" 512 300 >"$out" 2>&1 &
srun_pid=$!
victim=
for ((i = 0; i < 100; i++)); do
  [ -n "$victim" ] && break
  sleep 0.1
  for p in $(pgrep -f "^$build/bench/jacobi 512 300"); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'SLURM_PROCID=1' && victim=$p
  done
done
sleep 1.5
[ -n "$victim" ] && kill -9 "$victim"
wait "$srun_pid"
check_failure "failure: SIGKILL of a task under srun" $?

# ---- start-up ---------------------------------------------------------------
# a task dies at each step of start-up: the others leave it out and start
# without it (lib/runtime/rdv_serve.c). A task that dies before it joins
# the rendezvous is left out at FTSVM_BOOT_TIMEOUT (short here); the others
# at once, when their connection to it closes.
points=(boot-rendezvous boot-addresses boot-keys boot-barrier)
for tasks in 3 4; do
  for ((i = 0; i < ${#points[@]}; i++)); do
    victim=$(((i + tasks) % tasks))
    FTSVM_BOOT_TIMEOUT=8 FTSVM_FAULT=${points[$i]}@$victim timeout 120 \
      srun --mpi=pmix -n "$tasks" "$build/bench/jacobi" 128 10 >"$out" 2>&1
    rc=$?
    # left out at start-up (absent from the job's first view), not removed
    # by a failure of the running job
    if grep -q "removed=$victim cause=start-up" "$out"; then
      check_failure "start-up: ${points[$i]}" $rc "$tasks" "$victim"
    else
      bad "start-up: ${points[$i]}@$victim on $tasks tasks: not left out at start-up"
      grep -v ' debug: ' "$out" | tail -12
    fi
  done
done

# ---- sbatch -----------------------------------------------------------------
rm -f "$out"
FTSVM_FAULT=for-chunk:20@1 timeout 200 sbatch --wait --quiet -o "$out" \
  examples/ftsvm.sbatch "$build/bench/jacobi" 512 200 >/dev/null 2>&1
rc=$?
# sbatch --wait exits with the script's status, srun's 137
if [ "$rc" != 0 ] && grep -q 'task 1: Killed' "$out" && grep -q 'verified yes' "$out" &&
   ! grep -q 'CANCELLED' "$out"; then
  keep_output "$out"
  ok "sbatch: examples/ftsvm.sbatch with task 1 killed: survivors verified (sbatch exit $rc)"
else
  bad "sbatch (exit $rc)"; [ -f "$out" ] && grep -v ' debug: ' "$out" | tail -12
fi

echo "slurm: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
