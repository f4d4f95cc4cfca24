#!/usr/bin/env bash
# Re-replication's figures: how fast redundancy comes back after a failure,
# beside a plain put loop of the same bytes, and what the copy costs the
# application while it runs.
#
#   bench/redundancy.sh BUILD_DIR [--runs R] [--nodes N] [--args "APP ARGS"]...
#
#   --runs R      runs per app (default 5); figures are medians over them
#   --nodes N     nodes per job (default 5)
#   --args "APP ARGS"  an app (jacobi or mgs, which log their steps) and its
#                 sizes; repeatable; default: --args "jacobi 1024 80"
#                 --args "mgs 1024 320"
#
# Per run, side by side: (1) the app on N nodes with node 1 SIGKILLed at half
# its failure-free time; every survivor logs "redundancy restored: R rows,
# B bytes in C ms" (rereplicate.c; C from the copy's start to the moment
# every member has every row); the copy's MB/s is B over the largest C;
# (2) `ftsvm-run -n 2 put_bw B` (bench/put_bw.c): the same bytes in the
# copy's pattern (a page, its words) with one flush, p50 of 5 loops, on an
# idle machine, and (3) the same while the app runs failure-free on N nodes
# beside it (the copy competes with the app for the cores). The ratios are
# (1) / (2) and (1) / (3), and (1) over put_bw's first loop, which, like the
# copy into fresh slots, writes memory of the target not yet written from
# the writer (over shared memory: a page fault per page in the writer). Slowdown: with APP_STEP_LOG=y node 0 logs each step of
# the app's main loop (a jacobi sweep, an mgs column). The copy is over
# within the step that the failure itself interrupts (milliseconds, where a
# step is tens), so no step runs beside the copy alone: the figure is that
# step (the one in which node 0's copy ended) over the same failure's step
# in a run without the copy (FTSVM_HOME_HEADROOM=0: the rows stay single;
# the step in which node 0's recovery ended).
# MB: 10^6 bytes. Exits non-zero if a run gave no figures.
set -euo pipefail

build=${1:-}
if [ -z "$build" ] || [ "${build#-}" != "$build" ]; then
  sed -n '6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2
fi
shift
runs=5 nodes=5 specs=()
while [ $# -gt 0 ]; do
  case $1 in
    --runs)  runs=${2:?--runs needs a number}; shift 2 ;;
    --nodes) nodes=${2:?--nodes needs a number}; shift 2 ;;
    --args)  specs+=("${2:?--args needs an app and its arguments}"); shift 2 ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "redundancy.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
case $runs in ''|*[!0-9]*|0) echo "redundancy.sh: --runs '$runs'" >&2; exit 2 ;; esac
case $nodes in ''|*[!0-9]*|0|1|2) echo "redundancy.sh: --nodes '$nodes': need 3 or more" >&2; exit 2 ;; esac
[ ${#specs[@]} -gt 0 ] || specs=("jacobi 1024 80" "mgs 1024 320")
run=$build/tools/ftsvm-run
for f in "$run" "$build/bench/put_bw"; do
  [ -x "$f" ] || { echo "redundancy.sh: no $f (build first: ci/build.sh $build)" >&2; exit 2; }
done
for spec in "${specs[@]}"; do
  case ${spec%% *} in
    jacobi|mgs) [ -x "$build/bench/${spec%% *}" ] || { echo "redundancy.sh: no $build/bench/${spec%% *}" >&2; exit 2; } ;;
    *) echo "redundancy.sh: --args '$spec': jacobi or mgs (the apps that log their steps)" >&2; exit 2 ;;
  esac
done

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR] = $1} END {if (NR) printf "%.2f", a[int((NR + 1) / 2)]; else printf "-"}'; }

# the figures of one failure run's output: bytes, copy ms (largest), copy
# MB/s, the seconds of node 0's step in which the copy ended (or -)
figures() {
  awk '
    # [0] ... [ftsvm-event view=V removed=R cause=C detected_ns=D recovered_ns=E]
    /\[ftsvm-event view=/ && $1 == "[0]" {
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^detected_ns=/) { sub(/detected_ns=/, "", $i); det = $i }
        if ($i ~ /^recovered_ns=/) { sub(/recovered_ns=/, "", $i); sub(/\]/, "", $i); rec = $i }
      }
    }
    /redundancy restored: / {
      for (i = 1; i <= NF; i++) {
        if ($i == "bytes" && $(i + 1) == "in") { bytes = $(i - 1); c = $(i + 2) + 0 }
        if ($i == "after" && $(i + 1) == "the") { after = $(i - 2) + 0 }
      }
      if (c > cmax) cmax = c
      if ($1 == "[0]") { c0 = c; a0 = after }
    }
    $1 == "[0]" && $2 == "app" && $3 == "step" { n++; k[n] = $4; t0[n] = $5; t1[n] = $6 }
    END {
      if (bytes == "" || cmax <= 0) { print "none"; exit }
      slow = "-"
      if (det != "" && a0 > 0) {
        end = det / 1e9 + a0 / 1e3   # node 0: the copy over here
        for (i = 1; i <= n; i++) if (t0[i] <= end && end <= t1[i]) slow = sprintf("%.6f", t1[i] - t0[i])
      }
      printf "%s %.2f %.1f %s\n", bytes, cmax, bytes / (cmax * 1e3), slow
    }'
}

# seconds of node 0's step in which its recovery ended (a run without the
# copy: FTSVM_HOME_HEADROOM=0), or -
failstep() {
  awk '
    /\[ftsvm-event view=/ && $1 == "[0]" {
      for (i = 1; i <= NF; i++) if ($i ~ /^recovered_ns=/) { sub(/recovered_ns=/, "", $i); sub(/\]/, "", $i); rec = $i / 1e9 }
    }
    $1 == "[0]" && $2 == "app" && $3 == "step" { n++; t0[n] = $5; t1[n] = $6 }
    END {
      s = "-"
      for (i = 1; i <= n; i++) if (rec != "" && t0[i] <= rec && rec <= t1[i]) s = sprintf("%.6f", t1[i] - t0[i])
      print s
    }'
}

status=0
echo "redundancy: $runs runs per app on $nodes nodes, node 1 killed at half the failure-free time"
for spec in "${specs[@]}"; do
  read -r -a words <<<"$spec"
  app=${words[0]}
  t0=$(now)
  "$run" -n "$nodes" --timeout 300 "$build/bench/$app" "${words[@]:1}" >/dev/null 2>&1 ||
    { echo "redundancy.sh: $spec does not run without a failure" >&2; exit 1; }
  at=$(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.3f", (b - a) / 2}')
  mb=() raw=() ratio=() slow=() sizes=() lraw=() lratio=() fraw=() fratio=()
  for ((i = 1; i <= runs; i++)); do
    out=$(APP_STEP_LOG=y "$run" -n "$nodes" --timeout 300 --kill "1@$at" \
          "$build/bench/$app" "${words[@]:1}" 2>&1) || true
    read -r bytes cms mbps sl <<<"$(figures <<<"$out")"
    if [ "$bytes" = none ] || ! grep -q 'verified yes' <<<"$out"; then
      echo "  run $i: no redundancy figures or not verified:"; tail -5 <<<"$out" | sed 's/^/    /'
      status=1; continue
    fi
    pbw=$("$run" -n 2 --timeout 120 "$build/bench/put_bw" "$bytes" 4096 $((16 * nodes)) 5 2>&1)
    put=$(sed -n 's/.*put_bw mbps=\([0-9.]*\).*/\1/p' <<<"$pbw")
    first=$(sed -n 's/.*put_bw mbps=.* first=\([0-9.]*\).*/\1/p' <<<"$pbw")
    [ -n "$put" ] && [ -n "$first" ] || { echo "  run $i: put_bw gave no figure"; status=1; continue; }
    # the same failure without the copy (no headroom: the rows stay single)
    out0=$(FTSVM_HOME_HEADROOM=0 APP_STEP_LOG=y "$run" -n "$nodes" --timeout 300 --kill "1@$at" \
           "$build/bench/$app" "${words[@]:1}" 2>&1) || true
    st0=$(failstep <<<"$out0")
    if [ "$sl" != - ] && [ "$st0" != - ]; then
      sl=$(awk -v a="$sl" -v b="$st0" 'BEGIN {printf "%.2f", a / b}')
    else
      sl=-
    fi
    "$run" -n "$nodes" --timeout 300 "$build/bench/$app" "${words[@]:1}" >/dev/null 2>&1 &
    bg=$!
    sleep "$at"
    lput=$("$run" -n 2 --timeout 120 "$build/bench/put_bw" "$bytes" 4096 $((16 * nodes)) 5 2>&1 |
           sed -n 's/.*put_bw mbps=\([0-9.]*\).*/\1/p')
    wait "$bg" || true
    [ -n "$lput" ] || { echo "  run $i: put_bw beside the app gave no figure"; status=1; continue; }
    r=$(awk -v a="$mbps" -v b="$put" 'BEGIN {printf "%.2f", a / b}')
    lr=$(awk -v a="$mbps" -v b="$lput" 'BEGIN {printf "%.2f", a / b}')
    fr=$(awk -v a="$mbps" -v b="$first" 'BEGIN {printf "%.2f", a / b}')
    printf '  %s run %d: copied %s bytes in %s ms: %s MB/s; put loop %s MB/s idle (its first loop %s), %s beside the app; ratios %s, %s (%s of the first loop); failure step with / without the copy %s\n' \
           "$app" "$i" "$bytes" "$cms" "$mbps" "$put" "$first" "$lput" "$r" "$lr" "$fr" "$sl"
    mb+=("$mbps") raw+=("$put") ratio+=("$r") sizes+=("$bytes") lraw+=("$lput") lratio+=("$lr")
    fraw+=("$first") fratio+=("$fr")
    [ "$sl" = - ] || slow+=("$sl")
  done
  printf '%s (%s): median of %d runs: %s bytes copied, %s MB/s; put loop %s MB/s idle (first loop %s), %s beside the app; copy/put %sx idle, %sx beside the app, %sx of the first loop; failure step with / without the copy %sx (%d runs)\n' \
         "$app" "${words[*]:1}" "${#mb[@]}" "$(printf '%s\n' "${sizes[@]:-}" | median)" \
         "$(printf '%s\n' "${mb[@]:-}" | median)" "$(printf '%s\n' "${raw[@]:-}" | median)" \
         "$(printf '%s\n' "${fraw[@]:-}" | median)" "$(printf '%s\n' "${lraw[@]:-}" | median)" \
         "$(printf '%s\n' "${ratio[@]:-}" | median)" "$(printf '%s\n' "${lratio[@]:-}" | median)" \
         "$(printf '%s\n' "${fratio[@]:-}" | median)" \
         "$(printf '%s\n' "${slow[@]:-}" | median)" "${#slow[@]}"
done
exit $status
