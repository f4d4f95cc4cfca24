#!/usr/bin/env bash
# A failure campaign: R runs of the application benchmarks, each with one node
# (or K nodes, one after another) failing at a random moment, and how the
# jobs fared.
#
#   bench/campaign.sh BUILD_DIR [--runs R] [--nodes N] [--apps "jacobi matmul ..."]
#                     [--inject kill|fault|both] [--failures K] [--seed S]
#                     [--log FILE] [--args "APP ARGS..."]...
#
#   --runs R      runs with a failure (default 20), spread over the apps in turn
#   --nodes N     nodes per job (default 4; with --failures K, K + 3)
#   --failures K  nodes that fail in each run, one after another (default 1).
#                 The first fails as below; each later one is a SIGKILL of
#                 another node drawn at random, a random delay after
#                 redundancy is back from the one before (`--kill
#                 NODE@redundancy+SEC`), so at least the restore time after
#                 it: a run of each app with one kill first measures how long
#                 the failover and the copy back to two homes take
#                 (ftsvm-run's "redundancy restored"), and the delay is drawn
#                 in [0, 2 x that + 0.1 s]. (A fixed gap from the earlier
#                 kill would come before redundancy is back when the earlier
#                 failure fell in start-up, whose detection is slower: that
#                 run then loses data, as it must.) Restore times are
#                 reported per failure.
#   --apps LIST   which of bench/'s apps (default: jacobi matmul lu mgs sort taskq)
#   --inject      how a node fails: kill = SIGKILL from `ftsvm-run --kill NODE@SEC`
#                 at a random time within the app's run, fault = SIGKILL at a
#                 random FTSVM_FAULT point ("<point>[:<n>]@<node>"), both (default)
#                 = either, at random
#   --seed S      seed of bash's RANDOM, to repeat a campaign
#   --log FILE    per-run lines, and the end of the output of every run that
#                 did not survive (default BUILD_DIR/campaign.log)
#   --args "APP ARGS"  run APP with these arguments (its sizes), e.g.
#                 --args "sort 4194304" --args "jacobi 2048 20"; FTSVM_SHARED_SIZE
#                 (default 64M) must hold the data
#
# Each app first runs once without a failure, to measure how long a job takes;
# kill times are drawn from the launch to the end of the job, start-up
# included (a node lost in start-up is left out and the others start without
# it), and the FTSVM_FAULT points include the start-up steps (boot-*). The
# failed node is any node, drawn at random. Every run has a --timeout (10x the
# failure-free time, at least 30 s), so a hung job is killed and counted as
# not survived. Kills that land before the job's timed part are counted, to
# show how many fell in start-up. A run survived when every node that was not made to fail
# exited 0, and verified when a node printed "verified yes" (both from
# `ftsvm-run --report`). At the end: runs survived / runs, verified / runs,
# and the p50 and max of the detection and failover times that the survivors
# reported. Exits 0 only if every run survived and verified.
set -euo pipefail

usage() {
  sed -n '4,5p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

build=${1:-}
if [ -z "$build" ] || [ "${build#-}" != "$build" ]; then usage; fi
shift
runs=20 nodes= inject=both log= failures=1
declare -A app_args
apps=(jacobi matmul lu mgs sort taskq)
while [ $# -gt 0 ]; do
  case $1 in
    --runs)   runs=${2:?--runs needs a number}; shift 2 ;;
    --nodes)  nodes=${2:?--nodes needs a number}; shift 2 ;;
    --apps)   read -r -a apps <<<"${2:?--apps needs a list}"; shift 2 ;;
    --inject) inject=${2:?--inject needs kill, fault or both}; shift 2 ;;
    --failures) failures=${2:?--failures needs a number}; shift 2 ;;
    --seed)   RANDOM=${2:?--seed needs a number}; shift 2 ;;
    --log)    log=${2:?--log needs a file}; shift 2 ;;
    --args)   read -r -a words <<<"${2:?--args needs an app and its arguments}"
              app_args[${words[0]}]=${words[*]:1}; shift 2 ;;
    -h|--help) sed -n '2,42p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "campaign.sh: unknown option '$1'" >&2; usage ;;
  esac
done
case $runs in ''|*[!0-9]*) echo "campaign.sh: --runs '$runs' is not a number" >&2; exit 2 ;; esac
case $failures in ''|*[!0-9]*|0) echo "campaign.sh: --failures '$failures': need 1 or more" >&2; exit 2 ;; esac
nodes=${nodes:-$((failures > 1 ? failures + 3 : 4))}
case $nodes in ''|*[!0-9]*|0|1) echo "campaign.sh: --nodes '$nodes': need 2 or more" >&2; exit 2 ;; esac
if [ $((nodes - failures)) -lt 2 ]; then
  echo "campaign.sh: --failures $failures on $nodes nodes leaves fewer than 2" >&2; exit 2
fi
case $inject in kill|fault|both) ;; *) echo "campaign.sh: --inject '$inject'" >&2; exit 2 ;; esac
[ ${#apps[@]} -gt 0 ] || { echo "campaign.sh: --apps is empty" >&2; exit 2; }

run=$build/tools/ftsvm-run
[ -x "$run" ] || { echo "campaign.sh: no $run (build first: ci/build.sh $build)" >&2; exit 2; }
for app in "${apps[@]}"; do
  [ -x "$build/bench/$app" ] || { echo "campaign.sh: no app $build/bench/$app" >&2; exit 2; }
done
for app in "${!app_args[@]}"; do
  [[ " ${apps[*]} " == *" $app "* ]] || { echo "campaign.sh: --args names '$app', not in --apps" >&2; exit 2; }
done
# an app and its arguments, as words
app_cmd() { local a=${app_args[$1]:-}; echo "$build/bench/$1${a:+ $a}"; }
log=${log:-$build/campaign.log}
: >"$log"
export FTSVM_SHARED_SIZE=${FTSVM_SHARED_SIZE:-64M}

# the FTSVM_FAULT points; the ones with :1 name a page count, the others may
# take the n-th time the node gets there
points=(before-phase1 phase1-pending phase1-diffs:1 next-release phase1-applied
        phase2-pending phase2-diffs:1 phase2-applied last-release lock-held lock-wait
        lock-home backup barrier fetch for-chunk
        boot-rendezvous boot-addresses boot-keys boot-barrier)
countable=" lock-held lock-wait lock-home backup barrier fetch for-chunk "

work=$(mktemp -d "${TMPDIR:-/tmp}/ftsvm-campaign.XXXXXX")
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
# a number in [lo, hi], to the ms
uniform() { awk -v lo="$1" -v hi="$2" -v r="$RANDOM" 'BEGIN {printf "%.3f", lo + (hi - lo) * r / 32767}'; }
value() { sed -n "s/^$1=//p" "$2" 2>/dev/null | head -1; }
say() { echo "$*"; echo "$*" >>"$log"; }

# ---- one failure-free run per app: how long a job takes ----
declare -A total start_end timeout
for app in "${apps[@]}"; do
  t0=$(now)
  # shellcheck disable=SC2046  # the app's arguments are words
  out=$("$run" -n "$nodes" --timeout 300 --report "$work/report" $(app_cmd "$app") 2>&1) || true
  t1=$(now)
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
  app_time=$(sed -n 's/.* time \([0-9.]*\) s verified.*/\1/p' <<<"$out" | head -1)
  if [ "$(value verified "$work/report")" != yes ]; then
    say "warning: $app did not verify without a failure; its kill times are a guess"
    echo "$out" | tail -20 >>"$log"
  fi
  total[$app]=$wall
  # the app's own timed part starts about its time before the end: what
  # comes before is mostly start-up (only counted, see in_startup)
  start_end[$app]=$(awk -v w="$wall" -v a="${app_time:-0}" \
                    'BEGIN {s = w - a; printf "%.3f", (s > 0) ? s : 0}')
  timeout[$app]=$(awk -v w="$wall" 'BEGIN {t = 10 * w; printf "%d", (t > 30) ? t : 30}')
  say "$app: $wall s on $nodes nodes without a failure (app time ${app_time:-?} s)"
done

# ---- with --failures K: how long one failure takes to be repaired ----
# ms from the kill until redundancy is back: the failover plus the copy
# (ftsvm-run's summary: "failover F ms, redundancy restored in T ms")
declare -A restore
if [ "$failures" -gt 1 ]; then
  for app in "${apps[@]}"; do
    at=$(awk -v w="${total[$app]}" 'BEGIN {printf "%.3f", w / 2}')
    # shellcheck disable=SC2046
    out=$("$run" -n "$nodes" --timeout "${timeout[$app]}" --report "$work/report" \
          --kill "$((nodes - 1))@$at" $(app_cmd "$app") 2>&1) || true
    f=$(value failover_ms "$work/report")
    t=$(grep -o 'redundancy restored in [0-9.]* ms' <<<"$out" | head -1 | tr -dc '0-9.')
    if [ -z "$t" ] || [ -z "$f" ] || [ "$f" = none ]; then
      say "warning: $app: one kill at $at s gave no restore time; taking 500 ms"
      echo "$out" | tail -20 >>"$log"
      restore[$app]=500
    else
      restore[$app]=$(awk -v f="$f" -v t="$t" 'BEGIN {printf "%.1f", f + t}')
    fi
    say "$app: one failure repaired in ${restore[$app]} ms (failover ${f:-?} ms + copy to two homes ${t:-?} ms)"
  done
fi

# ---- the runs ----
survived=0 verified=0 injected=0 in_startup=0 all_failed=0
detections=() failovers=() restores=()
for ((i = 1; i <= runs; i++)); do
  app=${apps[$(((i - 1) % ${#apps[@]}))]}
  node=$((RANDOM % nodes))
  victims=" $node "
  how=$inject
  [ "$how" = both ] && how=$( ((RANDOM % 2)) && echo kill || echo fault)
  args=() env=()
  if [ "$how" = kill ]; then
    # with later failures to come, the first in the job's first half
    hi=$(awk -v w="${total[$app]}" -v k="$failures" \
         'BEGIN {h = ((k > 1) ? w / 2 : w) - 0.01; printf "%.3f", (h > 0.01) ? h : 0.01}')
    at=$(uniform 0 "$hi")
    awk -v at="$at" -v s="${start_end[$app]}" 'BEGIN {exit !(at < s)}' &&
      in_startup=$((in_startup + 1))
    args=(--kill "$node@$at")
    what="kill $node@$at"
  else
    point=${points[$((RANDOM % ${#points[@]}))]}
    if [[ $countable == *" $point "* ]] && ((RANDOM % 2)); then
      point=$point:$((2 + RANDOM % 2))
    fi
    env=("FTSVM_FAULT=$point@$node")
    what="FTSVM_FAULT=$point@$node"
  fi
  # the later failures: other nodes, each a gap after the one before
  for ((k = 2; k <= failures; k++)); do
    while [[ $victims == *" $node "* ]]; do node=$((RANDOM % nodes)); done
    victims+="$node "
    gap=$(uniform 0 "$(awk -v r="${restore[$app]}" 'BEGIN {printf "%.3f", 2 * r / 1000 + 0.1}')")
    args+=(--kill "$node@redundancy+$gap")
    what+=" $node@r+$gap"
  done
  rm -f "$work/report"
  t0=$(now)
  # ftsvm-run's --timeout ends a hung job; timeout(1) is there in case the
  # launcher itself does not end
  out=$(env "${env[@]}" timeout -s KILL $((timeout[$app] + 60)) \
        "$run" -n "$nodes" --timeout "${timeout[$app]}" --report "$work/report" "${args[@]}" \
        $(app_cmd "$app") 2>&1) || true
  t1=$(now)
  # what the nodes said, for ci/check-log.sh (set by ci/test.sh)
  [ -z "${TEST_NODE_OUTPUT_LOG:-}" ] || printf '%s\n' "$out" >>"$TEST_NODE_OUTPUT_LOG"
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
  r=$work/report
  s=$(value survived "$r"); v=$(value verified "$r"); k=$(value killed_node "$r")
  d=$(value detected_ms "$r"); f=$(value failover_ms "$r")
  s=${s:-0} v=${v:-none} k=${k:--1} d=${d:-none} f=${f:-none}
  [ "$s" = 1 ] && survived=$((survived + 1))
  [ "$v" = yes ] && verified=$((verified + 1))
  [ "$k" != -1 ] && injected=$((injected + 1))
  [ "$d" != none ] && detections+=("$d")
  [ "$f" != none ] && failovers+=("$f")
  n_failed=$(value failed_nodes "$r")
  [ "${n_failed:-0}" -ge "$failures" ] && all_failed=$((all_failed + 1))
  # every failure's restore time, from the summary line
  mapfile -t got < <(grep -o 'redundancy restored in [0-9.]* ms' <<<"$out" | tr -dc '0-9.\n')
  restores+=(${got[@]+"${got[@]}"})
  line=$(printf 'run %d/%d %-7s %-28s failed node %-2s survived %s verified %-4s detection %s ms failover %s ms timed out %s exit %s (%s s)' \
         "$i" "$runs" "$app" "$what" "$k" "$s" "$v" "$d" "$f" "$(value timed_out "$r")" \
         "$(value exit "$r")" "$wall")
  if [ "$failures" -gt 1 ]; then
    line+=" failed ${n_failed:-0}, restored in ${got[*]:-none} ms"
  fi
  say "$line"
  if [ "$s" != 1 ] || [ "$v" != yes ]; then
    { echo "--- end of the output of run $i:"; echo "$out" | tail -20; echo "---"; } >>"$log"
  fi
done

# p50 (nearest rank) and max of a list of numbers, "-" if empty
stats() {
  if [ $# -eq 0 ]; then echo "p50 - ms, max - ms (no survivor reported a failure)"; return; fi
  printf '%s\n' "$@" | sort -g |
    awk '{a[NR] = $1} END {printf "p50 %.1f ms, max %.1f ms (%d runs)", a[int((NR + 1) / 2)], a[NR], NR}'
}

say ""
say "campaign: $runs runs of ${apps[*]} on $nodes nodes (injected: $inject, $failures failure(s) a run)"
for app in "${!app_args[@]}"; do say "  $app with arguments ${app_args[$app]}"; done
say "  a node failed in $injected / $runs runs"
say "  kills before the timed part (most in start-up): $in_startup"
say "  survived   $survived / $runs"
say "  verified   $verified / $runs"
say "  detection  $(stats ${detections[@]+"${detections[@]}"})"
say "  failover   $(stats ${failovers[@]+"${failovers[@]}"})"
if [ "$failures" -gt 1 ]; then
  say "  runs where all $failures nodes failed (not after the job's end): $all_failed / $runs"
  say "  restored   $(stats ${restores[@]+"${restores[@]}"}) (every failure: news to two homes)"
fi
echo "  log: $log"
[ "$survived" -eq "$runs" ] && [ "$verified" -eq "$runs" ]
