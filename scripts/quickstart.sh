#!/usr/bin/env bash
# The README's main job: set up, then train the quickstart composition (cache the teachers'
# features -> train towers, router and heads -> evaluate against each teacher's own probe) and
# print the retention table. Extra arguments go to `nexus train` (e.g. --json).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh runtime   # the command and its plugins; scripts/test.sh builds the tests too
run="runs/quickstart-$(date +%Y%m%d-%H%M%S)"
exec build/bin/nexus train configs/quickstart.yaml --run "$run" "$@"
