#!/usr/bin/env bash
# Install what ftsvm needs to build, test and run on Debian 12, only what is
# missing (idempotent: a second run installs nothing and makes no network
# call). Needs root, or sudo.
set -euo pipefail

PACKAGES=(
  gcc make cmake pkg-config
  libucx-dev ucx-utils          # transport (UCX/UCP)
  libibverbs-dev librdmacm-dev  # rdma-core, for the verbs backend
  libpmix-dev openmpi-bin       # PMIx start-up; mpirun for the PMIx tests
  libcriterion-dev              # tests
  clang-14 libclang-rt-14-dev   # libFuzzer target of the diff decoder
  iproute2                      # ip netns: ftsvm-run --netns, multi-address tests
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "ci/deps.sh: missing packages ${missing[*]}; run this script as root" >&2
    exit 1
  fi
fi
echo "ci/deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
