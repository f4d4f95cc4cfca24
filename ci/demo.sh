#!/usr/bin/env bash
# The README's first command: install what is missing, build, and run the
# main job on this machine: the fault-tolerant run. Four nodes run the
# jacobi benchmark; node 2 is SIGKILLed 1.5 s after launch (the app runs
# for some seconds, start-up takes well under one); the three survivors
# finish and verify, and the launcher's summary line shows the detection
# time, the failover time and the verified result. It exits 0 only if the
# survivors verified.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh
ci/build.sh build
exec build/tools/ftsvm-run -n 4 --kill 2@1.5 --timeout 120 build/bench/jacobi 512 200
