#!/usr/bin/env bash
# The README's test command: sets up (scripts/setup.sh), runs the unit and CLI tests, then
# installs NEXUS into a prefix and builds the out-of-tree example plugin against it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh   # packages, pretrained models, datasets, image teacher, build
# Tests must not depend on anything a developer has in their own plugin path or caches.
export NEXUS_CACHE_DIR="$PWD/build/test-cache"
unset NEXUS_PLUGIN_PATH
rm -rf "$NEXUS_CACHE_DIR"
ctest --test-dir build --output-on-failure -j"${NEXUS_JOBS:-2}" --timeout 300
# Every parser's fuzz harness under ASan and UBSan for a fixed budget (12 harnesses x 12 s, one per
# core: about 72 s on 2 cores, plus about 50 s to build them); a crash, leak, timeout or excess
# memory fails CI. Longer runs are for developers (scripts/fuzz.sh --seconds 600).
scripts/fuzz.sh --seconds "${NEXUS_FUZZ_SECONDS:-12}"
# Integration: the README's main job end to end on real teachers and real data (cold cache):
# cache -> train -> evaluate, and every task must meet the quickstart's retention contract.
rm -rf build/test-runs/quickstart
build/bin/nexus train configs/quickstart.yaml --run build/test-runs/quickstart
# The add-a-teacher walk-through (docs/adding-a-teacher.md): a base run, a stronger text teacher
# added incrementally (beside a full retrain), the image teacher removed; check.py asserts the
# proofs (the wall-time ratio is reported, not asserted, on shared CI machines).
NEXUS_DEMO_NO_TIMING=1 examples/add_teacher/run.sh build/test-runs/add_teacher
# The out-of-tree example plugin, built against the installed package, then added as a teacher to
# that base run.
scripts/example_plugin_test.sh build/test-runs/add_teacher/base
