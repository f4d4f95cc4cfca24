#!/usr/bin/env bash
# Install a build into a fresh prefix and build a user's program against it,
# once with find_package(ftsvm) and once with pkg-config; run both with the
# installed ftsvm-run.   ci/check-install.sh BUILD_DIR
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: ci/check-install.sh BUILD_DIR}" && pwd)
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT

cmake --install "$build" --prefix "$prefix" >/dev/null
lib=$(find "$prefix" -name 'libftsvm.so.*.*' | head -1)
soname=$(readelf -d "$lib" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = libftsvm.so.0 ] || { echo "SONAME is '$soname'"; exit 1; }
test -f "$prefix/include/ftsvm.h"

cmake -S "$src/test/install" -B "$prefix/consumer" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer" >/dev/null
libdir=$(dirname "$lib")
PKG_CONFIG_PATH="$libdir/pkgconfig" gcc -o "$prefix/consumer-pc" "$src/test/install/consumer.c" \
  $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs ftsvm)

export LD_LIBRARY_PATH="$libdir"
"$prefix/bin/ftsvm-run" -n 2 "$prefix/consumer/consumer" | grep -q "consumer node 1 of 2"
"$prefix/bin/ftsvm-run" -n 2 "$prefix/consumer-pc" | grep -q "consumer node 0 of 2"
echo "installed ftsvm works with find_package and pkg-config"
