#!/usr/bin/env bash
# Configures and builds NEXUS into ./build (incremental; ccache makes rebuilds cheap).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${NEXUS_JOBS:-$(nproc)}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=${NEXUS_BUILD_TYPE:-RelWithDebInfo} \
  -DCMAKE_INSTALL_PREFIX="${NEXUS_PREFIX:-$PWD/build/prefix}" >/dev/null
ninja -C build -j"$jobs" "$@"
