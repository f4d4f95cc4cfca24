#!/usr/bin/env bash
# The layers of lib/ (STYLE.md: dependencies point down):
#
#     common <- rdma <- runtime <- failure <- replica <- hlrc <- locks <- api
#
#   ci/check-layers.sh BUILD_DIR
#
# Fails, naming file and symbol, when
#   - a file in lib/ includes "../something": a module reaches past its own
#     include path (each module's path names only what it may use);
#   - an object of a module leaves undefined a symbol that a module it may not
#     use defines (nm -u of each object against the modules below it): a call
#     through a local prototype links, this is what catches it.
# Upward news (a peer died, a view changed) goes through registered callbacks,
# which need no symbol of the module above.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: ci/check-layers.sh BUILD_DIR}
objects=$build/lib/CMakeFiles

# each module and the modules it may use (as in lib/CMakeLists.txt)
declare -A uses=(
  [common]=""
  [rdma]="common"
  [runtime]="common rdma"
  [failure]="common rdma runtime"
  [replica]="common rdma runtime failure"
  [hlrc]="common rdma runtime failure replica"
  [locks]="common rdma runtime failure replica hlrc"
  [api]="common rdma runtime failure replica hlrc locks"
)
modules="common rdma runtime failure replica hlrc locks api"
failed=0

# 1. no include that climbs out of a module's folder
while IFS=: read -r file line text; do
  echo "check-layers: $file:$line: $text: an include that climbs out of the module;" \
       "use its include path, which names what it may use" >&2
  failed=1
done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"\.\./' lib \
           --include='*.c' --include='*.h' || true)

# 2. no undefined symbol that only a module above (or beside) defines
declare -A owner=()
for m in $modules; do
  dir=$objects/ftsvm_$m.dir
  if [ ! -d "$dir" ] || [ -z "$(find "$dir" -name '*.o' -print -quit)" ]; then
    echo "check-layers: no objects of module $m in $dir (build $build first)" >&2
    exit 2
  fi
  while read -r sym; do
    owner[$sym]=$m
  done < <(find "$dir" -name '*.o' -exec nm --defined-only --extern-only {} + |
             awk 'NF == 3 { print $3 }')
done
for m in $modules; do
  allowed=" $m ${uses[$m]} "
  while IFS= read -r obj; do
    while read -r sym; do
      def=${owner[$sym]:-}
      if [ -n "$def" ] && [[ "$allowed" != *" $def "* ]]; then
        src=${obj#"$objects/ftsvm_$m.dir/"}
        echo "check-layers: lib/${src%.o} (module $m) uses $sym of module $def," \
             "which $m may not use (it may use: ${uses[$m]:-nothing})" >&2
        failed=1
      fi
    done < <(nm --undefined-only "$obj" | awk '{ print $NF }')
  done < <(find "$objects/ftsvm_$m.dir" -name '*.o' | sort)
done

if [ "$failed" -ne 0 ]; then
  echo "check-layers: FAILED: dependencies must point down (STYLE.md, lib/CMakeLists.txt)" >&2
  exit 1
fi
echo "check-layers: ok ($modules)"
