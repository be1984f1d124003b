#!/usr/bin/env bash
# Adds a speech teacher and two speech capabilities to the trained quickstart run:
#   1. `nexus train configs/quickstart.yaml` (skipped when BASE_RUN is given);
#   2. `nexus add-teacher` with configs/teachers/resemblyzer.yaml: resemblyzer's speaker encoder, the
#      heads `language` and `digit` and their tasks. Only its tower, the new heads and the router
#      train; every text and image component is copied and frozen;
#   3. speech_check.py checks the proof: every frozen component's checksum identical, the old tasks'
#      accuracy unchanged, the new tasks against resemblyzer's own probes.
# Usage: examples/add_teacher/speech.sh [WORK_DIR] [BASE_RUN]   (needs scripts/setup.sh to have run)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
nexus=${NEXUS:-$root/build/bin/nexus}
work=${1:-$root/build/examples/add_speech}
base=${2:-}
rm -rf "$work"
mkdir -p "$work"
if [ -z "$base" ]; then
  echo "== 1. the quickstart run (text + image)"
  "$nexus" train "$root/configs/quickstart.yaml" --run "$work/base"
  base="$work/base"
fi
echo
echo "== 2. add resemblyzer with the speech tasks: train only its tower, the new heads and the router"
"$nexus" add-teacher "$base" --teacher "$root/configs/teachers/resemblyzer.yaml" --out "$work/speech"
echo
python3 "$here/speech_check.py" "$work/speech"
