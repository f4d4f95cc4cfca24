#!/usr/bin/env bash
# Configure and build ftsvm:  ci/build.sh BUILD_DIR [cmake options...]
# Warnings are errors here: this is the path CI takes.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: ci/build.sh BUILD_DIR [cmake options...]}
shift
cmake -S . -B "$dir" -DFTSVM_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
