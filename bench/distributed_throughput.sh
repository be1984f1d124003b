#!/usr/bin/env bash
# Training throughput with 1 and 2 data-parallel processes (`nexus train --nproc N`) on the
# quickstart's cached features: samples/s over the optimisation steps (all ranks together),
# median of RUNS runs each, and the ratio 2 processes / 1 in the same session.
# Usage: bench/distributed_throughput.sh [RUNS=3] [STEPS=600]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
steps=${2:-600}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for n in 1 2; do
  for i in $(seq "$runs"); do
    build/bin/nexus train configs/quickstart.yaml --run "$out/n$n-$i" --no-eval --json --nproc "$n" \
      --set trainer.steps="$steps" --set trainer.patience=0 > "$out/n$n-$i.json"
    python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['samples_per_second'])" "$out/n$n-$i.json" >> "$out/n$n.txt"
  done
done
python3 - "$out" "$runs" "$steps" <<'PY'
import statistics, sys
out, runs, steps = sys.argv[1], sys.argv[2], sys.argv[3]
med = {}
for n in (1, 2):
    xs = [float(x) for x in open(f"{out}/n{n}.txt")]
    med[n] = statistics.median(xs)
    print(f"{n} process(es): samples/s {', '.join(f'{x:.0f}' for x in xs)} (median {med[n]:.0f})")
print(f"ratio 2 / 1 processes: {med[2] / med[1]:.3f}  ({runs} runs each, {steps} steps, quickstart, batch 128)")
PY
