#!/usr/bin/env bash
# The add-a-teacher walk-through end to end (docs/adding-a-teacher.md):
#   1. train a base system: one text teacher (paraphrase-MiniLM-L3) and one image teacher;
#   2. add the stronger all-MiniLM-L6 with `nexus add-teacher`: only its tower and the router
#      train, and the same composition is also trained from scratch for the wall-time comparison;
#   3. remove the image teacher with `nexus remove-teacher`: the image task is reported lost.
# check.py then asserts what the proofs must show and prints the figures.
# Usage: examples/add_teacher/run.sh [WORK_DIR]   (needs scripts/setup.sh to have run)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
nexus=${NEXUS:-$root/build/bin/nexus}
work=${1:-$root/build/examples/add_teacher}
rm -rf "$work"
mkdir -p "$work"

echo "== 1. base run: paraphrase (text) + fmnist_cnn (image)"
"$nexus" train "$here/base.yaml" --run "$work/base"
echo
echo "== 2. add minilm: train only its tower and the router"
"$nexus" add-teacher "$work/base" --teacher "$here/minilm.yaml" --out "$work/added" --compare-full
echo
echo "== 3. remove fmnist_cnn"
"$nexus" remove-teacher "$work/added" --teacher fmnist_cnn --out "$work/removed"
echo
python3 "$here/check.py" "$work"
