#!/usr/bin/env python3
"""The distilled student served against the composition it came from, on the quickstart's texts.

    bench/distill_serving.py RUN STUDENT [--runs 3] [--json FILE]

RUN is a trained composition (runs/quickstart...), STUDENT what `nexus distill RUN --out STUDENT`
wrote. For each, one `nexus serve` at a time on this machine (nothing else running): every text task's
test split (the rows the composition's evaluation scores) is sent as /v1/predict requests of 32 texts
from 2 client threads; inputs/s is the test texts over the wall time from the first request to the
last answer; accuracy is the served labels against the dataset's. Median of --runs runs each. The
server runs with its defaults (micro-batching up to 64 inputs, 2 ms delay).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "serving"))
from serving_lib import Server, Workdir  # noqa: E402


def test_rows(run):
    """(task, texts, labels) of each text task, the rows the run's own evaluation scored."""
    ev = json.loads((Path(run) / "eval.json").read_text())
    comp = yaml.safe_load((Path(run) / "composition.resolved.yaml").read_text())
    out = []
    for t in ev["tasks"]:
        spec = comp["data"]["tasks"][t["task"]]
        if spec.get("modality") != "text":
            continue
        rows = (Path(comp["data"]["root"]) / spec["dataset"] / "test.tsv").read_text(encoding="utf-8").split("\n")[1:]
        rows = [r.split("\t") for r in rows if r][: t["rows"]]
        out.append((t["task"], [r[0] for r in rows], [int(r[1]) for r in rows]))
    return out


def serve_once(work, run, tasks):
    server = Server(work, run)
    try:
        # One warm-up request per task, outside the timing.
        for task, texts, _ in tasks:
            server.request("POST", "/v1/predict", {"task": task, "inputs": texts[:32]})
        jobs = [(task, i, texts[i:i + 32]) for task, texts, _ in tasks for i in range(0, len(texts), 32)]
        labels = {task: [None] * len(texts) for task, texts, _ in tasks}
        lock, failures = threading.Lock(), []

        def worker():
            while True:
                with lock:
                    if not jobs:
                        return
                    task, start, batch = jobs.pop()
                status, body = server.request("POST", "/v1/predict", {"task": task, "inputs": batch}, timeout=600)
                if status != 200:
                    failures.append(status)
                    continue
                for k, p in enumerate(body["predictions"]):
                    labels[task][start + k] = p["label"]

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
    finally:
        server.stop()
    if failures:
        raise SystemExit(f"{run}: {len(failures)} failed requests ({failures[:3]})")
    n = sum(len(texts) for _, texts, _ in tasks)
    acc = {task: sum(a == b for a, b in zip(labels[task], gold)) / len(gold) for task, _, gold in tasks}
    return n / seconds, acc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("student")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--nexus", default=str(ROOT / "build" / "bin" / "nexus"))
    args = ap.parse_args()
    tasks = test_rows(args.run)
    work = Workdir(args.nexus)
    # The runs' own feature cache is not needed to serve; the scratch cache stays empty.
    report = {"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(), "runs": args.runs,
              "texts": sum(len(t[1]) for t in tasks), "systems": {}}
    try:
        for name, folder in (("composition", args.run), ("student", args.student)):
            results = [serve_once(work, folder, tasks) for _ in range(args.runs)]
            rates = [r[0] for r in results]
            report["systems"][name] = {"folder": str(folder), "inputs_per_s": rates, "median_inputs_per_s": statistics.median(rates),
                                       "accuracy": results[0][1]}
            print(f"{name}: {statistics.median(rates):.1f} inputs/s (runs: {', '.join('%.1f' % r for r in rates)}); "
                  f"accuracy {', '.join('%s %.4f' % kv for kv in results[0][1].items())}", flush=True)
    finally:
        work.remove()
    s, c = report["systems"]["student"], report["systems"]["composition"]
    report["speedup"] = s["median_inputs_per_s"] / c["median_inputs_per_s"]
    print(f"student / composition: {report['speedup']:.2f}x inputs/s over {report['texts']} test texts")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
