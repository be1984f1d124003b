#!/usr/bin/env bash
# The README's main-job command: set up (dependencies, build) and run the default composition.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
composition=${1:-configs/foundation.yaml}
exec build/bin/nexus forward "$composition"
