#!/usr/bin/env python3
"""Top-1 routed inference against dense routing, end to end through `nexus serve` on loopback.

Trains (or reuses) two quickstart runs on the cached features:
  dense  configs/quickstart.yaml as it is: a softmax router over the projected towers, so every
         teacher of the input's modality runs on every input;
  top1   the same with a top-1 router that reads paraphrase-MiniLM-L3's own features: paraphrase
         (3 layers) runs on every text, all-MiniLM-L6 (6 layers) only on the texts routed to it.
and serves each one (top1 also with --routing dense: the same weights with every teacher run, the
same outputs) on the first --rows rows of each task's test split, in requests of --batch inputs.
Reports per configuration and task: accuracy, inputs/s (median of --repeats passes) and the
teacher forwards (rows encoded, from /metrics), and the ratios against dense in the same run.

Usage: bench/routed_inference.py [--nexus build/bin/nexus] [--runs runs/bench] [--rows 2000]
                                 [--batch 64] [--repeats 3] [--json FILE]
"""
import argparse
import http.client
import json
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--nexus", default=str(ROOT / "build/bin/nexus"))
ap.add_argument("--runs", default=str(ROOT / "runs/bench"))
ap.add_argument("--rows", type=int, default=2000)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--json", help="also write the figures here")
args = ap.parse_args()
runs = Path(args.runs)
data = ROOT / "data"

TOP1 = ["--set", "router.plugin=topk", "--set", "router.input=teacher:paraphrase", "--set", "router.options.k=1"]
for name, extra in (("quickstart-dense", []), ("quickstart-top1", TOP1)):
    if not (runs / name / "eval.json").exists():
        print(f"training {runs / name} ...", flush=True)
        subprocess.run([args.nexus, "train", str(ROOT / "configs/quickstart.yaml"), "--run", str(runs / name), *extra],
                       check=False, stdout=subprocess.DEVNULL)  # a missed contract still leaves a usable run


def text_split(dataset):
    rows = (data / dataset / "test.tsv").read_text().splitlines()[1:args.rows + 1]
    texts, labels = zip(*((r.split("\t")[0], int(r.split("\t")[1])) for r in rows))
    return list(texts), list(labels)


def idx(path):
    raw = path.read_bytes()
    dims = raw[3]
    shape = struct.unpack(">" + "I" * dims, raw[4:4 + 4 * dims])
    return shape, raw[4 + 4 * dims:]


def image_split():
    (n, h, w), pixels = idx(data / "fashion_mnist/images_test.idx")
    _, labels = idx(data / "fashion_mnist/labels_test.idx")
    n = min(n, args.rows)
    return [list(pixels[i * h * w:(i + 1) * h * w]) for i in range(n)], list(labels[:n])


tasks = {"supersense": text_split("wordnet_supersense"), "fortunes": text_split("fortunes_category"),
         "fashion": image_split()}


def serve(run, routing):
    p = subprocess.Popen([args.nexus, "serve", str(run), "--port", "0", "--routing", routing, "--max-delay-ms", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = int(p.stdout.readline().rsplit(":", 1)[1])
    return p, port


def teacher_rows(port):
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    return {l.split('"')[1]: int(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith("nexus_teacher_rows_total{")}


def one_pass(port, task, inputs):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    labels = []
    start = time.perf_counter()
    for i in range(0, len(inputs), args.batch):
        c.request("POST", "/v1/predict", json.dumps({"task": task, "inputs": inputs[i:i + args.batch]}))
        r = c.getresponse()
        body = json.loads(r.read())
        if r.status != 200:
            sys.exit(f"{task}: HTTP {r.status}: {body}")
        labels += [p["label"] for p in body["predictions"]]
    return time.perf_counter() - start, labels


configs = [("dense", runs / "quickstart-dense", "sparse"), ("top1", runs / "quickstart-top1", "sparse"),
           ("top1, every teacher run", runs / "quickstart-top1", "dense")]
results = {}
for label, run, routing in configs:
    server, port = serve(run, routing)
    try:
        for task, (inputs, gold) in tasks.items():
            times, rows = [], None
            for _ in range(args.repeats):
                before = teacher_rows(port)
                seconds, predicted = one_pass(port, task, inputs)
                after = teacher_rows(port)
                times.append(seconds)
                rows = {t: after.get(t, 0) - before.get(t, 0) for t in after}
            accuracy = sum(p == g for p, g in zip(predicted, gold)) / len(gold)
            results.setdefault(label, {})[task] = {
                "rows": len(gold), "accuracy": accuracy, "seconds": times,
                "inputs_per_s": len(gold) / statistics.median(times), "teacher_rows": rows,
                "teacher_forwards": sum(rows.values())}
            print(f"{label:24} {task:11} acc {accuracy:.4f}  {len(gold) / statistics.median(times):8.1f} inputs/s  "
                  f"teacher rows {rows}", flush=True)
    finally:
        server.terminate()
        server.wait()

print("\n| configuration | task | accuracy | inputs/s (median of %d) | teacher forwards | forwards vs dense | "
      "throughput vs dense |" % args.repeats)
print("|---|---|---|---|---|---|---|")
for label in results:
    for task, r in results[label].items():
        d = results["dense"][task]
        print(f"| {label} | {task} | {r['accuracy']:.4f} | {r['inputs_per_s']:.1f} | {r['teacher_forwards']} | "
              f"{r['teacher_forwards'] / d['teacher_forwards']:.3f} | {r['inputs_per_s'] / d['inputs_per_s']:.3f} |")
if args.json:
    Path(args.json).write_text(json.dumps(results, indent=1))
