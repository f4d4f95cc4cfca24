#!/usr/bin/env bash
# The README's first command: install what is missing, build, and run the
# main job on this machine (for now: the 4-node transport demo).
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh
ci/build.sh build
exec build/tools/ftsvm-run -n 4 --timeout 120 build/examples/ring
