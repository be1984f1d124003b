#!/usr/bin/env bash
# The GPU benchmark, on a machine with an NVIDIA GPU: builds NEXUS against a CUDA libtorch 2.x
# (scripts/build-cuda.sh), then trains the quickstart's towers, router and heads on its cached
# teacher features on the CPU and on the GPU (fp32, and towers and router in bf16 autocast), RUNS
# times each: samples/s over the optimisation steps, medians, and ratios to the CPU in the same
# run. Two batch sizes: the quickstart's 128, and 2048, where a GPU has work enough to show.
# Prints a Markdown table for docs/benchmarks.md with the devices named, and writes the raw
# figures to $OUT (or build-cuda/gpu-bench) as JSON.
# Usage: bench/gpu.sh [RUNS=3] [STEPS=1000]     NEXUS_GPU_SKIP_SETUP=1: models, data already there
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
steps=${2:-1000}
out=${OUT:-build-cuda/gpu-bench}
mkdir -p "$out"
if [ "${NEXUS_GPU_SKIP_SETUP:-0}" != 1 ]; then
  scripts/install-deps.sh
  scripts/fetch_models.sh
  python3 scripts/build_datasets.py
  /usr/bin/python3 scripts/train_image_teacher.py
fi
scripts/build-cuda.sh
nexus=build-cuda/bin/nexus
export NEXUS_CACHE_DIR=${NEXUS_CACHE_DIR:-$PWD/build-cuda/cache}
# Fill the feature cache once (teachers on the CPU, as `nexus train` does), outside the timings.
"$nexus" cache build configs/quickstart.yaml --split train,val >/dev/null

devices=${NEXUS_GPU_DEVICES:-"cpu cuda cuda-fp32"}
for batch in 128 2048; do
  for d in $devices; do
    for i in $(seq "$runs"); do
      case $d in
        cuda-fp32) flags=(--device cuda --no-bf16) ;;
        *) flags=(--device "$d") ;;
      esac
      rm -rf "$out/run"
      "$nexus" train configs/quickstart.yaml --run "$out/run" --no-eval --json "${flags[@]}" \
        --set trainer.steps="$steps" --set trainer.patience=0 --set trainer.batch_size="$batch" \
        > "$out/b$batch-$d-$i.json"
    done
  done
done
python3 - "$out" "$runs" "$steps" "$devices" <<'PY'
import json, os, statistics, sys
out, runs, steps, devices = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split()
label = {"cpu": "CPU, fp32", "cuda": "GPU, towers and router in bf16", "cuda-fp32": "GPU, fp32"}
cpu = os.popen("lscpu | sed -n 's/^Model name: *//p'").read().strip() or "CPU"
summary = []
print(f"| batch | device | samples/s ({runs} runs) | median | ratio to CPU |")
print("|---|---|---|---|---|")
for batch in (128, 2048):
    med = {}
    for d in devices:
        rs = [json.load(open(f"{out}/b{batch}-{d}-{i}.json")) for i in range(1, runs + 1)]
        xs = [r["samples_per_second"] for r in rs]
        med[d] = statistics.median(xs)
        name = rs[0]["device"] if rs[0]["device"] != "cpu" else f"cpu ({cpu}, {os.cpu_count()} threads)"
        ratio = med[d] / med["cpu"] if "cpu" in med else float("nan")
        print(f"| {batch} | {label.get(d, d)}: {name} | {', '.join(f'{x:.0f}' for x in xs)} | {med[d]:.0f} | {ratio:.2f} |")
        summary.append({"batch": batch, "device": name, "mode": d, "samples_per_second": xs, "median": med[d],
                        "val_accuracy": [r["val_accuracy"] for r in rs]})
json.dump({"steps": int(steps), "runs": runs, "results": summary}, open(f"{out}/summary.json", "w"), indent=1)
print(f"\n{steps} steps per run, quickstart composition, `--no-eval`; raw figures in {out}/summary.json")
PY
