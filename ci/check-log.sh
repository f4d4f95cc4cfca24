#!/usr/bin/env bash
# Read what every node of the test suite printed (the file that
# test/multi/run_util.h appends each run's output to, TEST_NODE_OUTPUT_LOG)
# and fail on any line in which the library says that it did not keep a
# promise: a guarantee is kept or the call fails, never a warning.
#
#   ci/check-log.sh LOG
set -euo pipefail
log=${1:?usage: ci/check-log.sh LOG}
if [ ! -s "$log" ]; then
  echo "check-log: $log is empty: the suite ran no node, or the log was not written" >&2
  exit 1
fi
# the words of a broken promise, as a warning or an error line of the library
broken='would leave|may (hold|keep) part|part of (it|a void)|goes without|not guaranteed|guarantee [0-9] (does not|cannot) hold|counted twice'
lines=$(grep -E '(warn|error): ' "$log" | grep -E -i "$broken" || true)
runs=$(grep -c 'ftsvm-run: [0-9]* nodes' "$log" || true)
if [ -n "$lines" ]; then
  echo "check-log: the library admitted a broken promise:" >&2
  printf '%s\n' "$lines" | sort | uniq -c | sort -rn | head -20 >&2
  exit 1
fi
echo "check-log: $runs jobs read, no line says that a promise was broken"
