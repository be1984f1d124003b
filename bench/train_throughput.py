#!/usr/bin/env python3
"""Training throughput: the C++ trainer (`nexus train`) against a plain PyTorch script on the same
cached features, the same towers + router + heads, batch size, optimiser, schedule and steps.

Both sides use the same libtorch (Debian's libtorch 1.13 and python3-torch 1.13 are one build) and
the same BLAS. Only the optimisation steps are timed on either side (batch sampling, forward, loss,
backward, gradient clipping, AdamW step, and the NaN checks the trainer does every step);
validation, checkpoints and cache loading are not. Runs alternate C++ / Python so that machine
noise hits both alike; the medians and their ratio are printed.

    bench/train_throughput.py [--composition configs/quickstart.yaml] [--runs 5] [--steps 1000]

The composition's features are cached first (`nexus cache build`, reused if present). The Python
reference supports what the quickstart uses: linear and mlp towers and heads, the softmax router
on the projected mean, cross_entropy losses.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from feature_cache import load_entry  # noqa: E402


def labels_of(data_root, dataset, split):
    """Labels of a (possibly shortened, "train[:N]") split, read like core/dataset.cpp does."""
    base, _, rest = split.partition("[:")
    limit = int(rest.rstrip("]")) if rest else None
    d = os.path.join(data_root, dataset)
    if os.path.exists(os.path.join(d, "labels_%s.idx" % base)):
        raw = np.fromfile(os.path.join(d, "labels_%s.idx" % base), dtype=np.uint8)
        labels = raw[8:].astype(np.int64)  # IDX: magic (4 bytes) + one big-endian dimension
    else:
        with open(os.path.join(d, base + ".tsv"), encoding="utf-8") as f:
            lines = f.read().split("\n")
        labels = np.array([int(l.split("\t")[1]) for l in lines[1:] if l], dtype=np.int64)
    return torch.from_numpy(labels[:limit] if limit else labels)


def make_tower(spec, d_in, d_out):
    plugin, opts = spec.get("plugin", "linear"), spec.get("options", {}) or {}
    if plugin == "linear":
        return torch.nn.Linear(d_in, d_out, bias=opts.get("bias", True))
    if plugin == "mlp":
        hidden, layers = opts.get("hidden", 256), opts.get("layers", 2)
        act = {"gelu": torch.nn.GELU, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[opts.get("activation", "gelu")]
        mods, width = [], d_in
        for i in range(layers):
            nxt = d_out if i + 1 == layers else hidden
            mods.append(torch.nn.Linear(width, nxt))
            if i + 1 < layers:
                mods.append(act())
            width = nxt
        return torch.nn.Sequential(*mods)
    raise SystemExit("the Python reference has no tower '%s'" % plugin)


class Reference(torch.nn.Module):
    """What core/system.cpp's fuse() computes: z = sum_i w_i(x) P_i(f_i(x)), heads read z."""

    def __init__(self, comp, widths):
        super().__init__()
        d = comp["shared_dim"]
        self.d = d
        self.towers = torch.nn.ModuleList([make_tower(t.get("tower", {}), widths[t["name"]], d) for t in comp["teachers"]])
        router = comp.get("router", {})
        if router.get("plugin", "softmax") != "softmax" or router.get("input", "projected_mean") != "projected_mean":
            raise SystemExit("the Python reference routes only with softmax on projected_mean")
        self.temperature = (router.get("options") or {}).get("temperature", 1.0)
        self.gate = torch.nn.Linear(d, len(comp["teachers"]))
        self.heads = torch.nn.ModuleDict({h["name"]: make_tower(h, d, h["outputs"]) for h in comp["heads"]})

    def forward(self, features):
        b = next(f.shape[0] for f in features if f is not None)
        n = len(features)
        projected, available = [], torch.zeros(b, n, dtype=torch.bool)
        for i, f in enumerate(features):
            if f is None:
                projected.append(torch.zeros(b, self.d))
            else:
                projected.append(self.towers[i](f))
                available[:, i] = True
        stacked = torch.stack(projected, 1)
        router_in = stacked.sum(1) / available.sum(1, keepdim=True).clamp_min(1).to(stacked.dtype)
        logits = (self.gate(router_in) / self.temperature).masked_fill(~available, float("-inf"))
        w = torch.softmax(logits, 1)
        shared = (w.unsqueeze(2) * stacked).sum(1)
        return {name: head(shared) for name, head in self.heads.items()}


def train_reference(comp, tasks, steps):
    """The trainer's step loop (core/trainer.cpp) in Python; returns samples/s of the timed steps."""
    cfg = comp.get("trainer", {})
    batch, lr0 = cfg.get("batch_size", 64), cfg.get("lr", 1e-3)
    wd, warmup, clip = cfg.get("weight_decay", 0.01), cfg.get("warmup_steps", 0), cfg.get("grad_clip", 1.0)
    torch.manual_seed(cfg.get("seed", 0))
    widths = {}
    for t in tasks:
        for name, f in t["train"].items():
            widths[name] = f.shape[1]
    model = Reference(comp, widths)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=lr0, weight_decay=wd)
    gen = torch.Generator().manual_seed(cfg.get("seed", 0) + 1)
    names = [t["name"] for t in comp["teachers"]]
    decay = max(1, steps - warmup)
    elapsed = 0.0
    for step in range(steps):
        start = time.perf_counter()
        task = tasks[step % len(tasks)]
        index = torch.randint(task["labels"].shape[0], (batch,), generator=gen)
        warm = (step + 1) / warmup if warmup > 0 and step < warmup else 1.0
        progress = min(max((step - warmup) / decay, 0.0), 1.0)
        lr = lr0 * warm * (1.0 if step < warmup else 0.5 * (1 + math.cos(math.pi * progress)))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        features = [task["train"][n].index_select(0, index) if n in task["train"] else None for n in names]
        out = model(features)
        loss = torch.nn.functional.cross_entropy(out[task["head"]], task["labels"].index_select(0, index))
        if not math.isfinite(loss.item()):
            raise SystemExit("reference diverged")
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, clip) if clip > 0 else torch.tensor(0.0)
        if not math.isfinite(float(norm)):
            raise SystemExit("reference gradient diverged")
        opt.step()
        elapsed += time.perf_counter() - start
    return steps * batch / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--composition", default=os.path.join(ROOT, "configs", "quickstart.yaml"))
    ap.add_argument("--nexus", default=os.path.join(ROOT, "build", "bin", "nexus"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--cache", default=None, help="feature cache folder (default: nexus's)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cache = ["--cache", args.cache] if args.cache else []

    with open(args.composition) as f:
        comp = yaml.safe_load(f)
    for loss in comp.get("losses", []):
        if loss.get("plugin") != "cross_entropy" or float(loss.get("weight", 1.0)) != 1.0:
            raise SystemExit("the Python reference supports unweighted cross_entropy losses only")
    built = subprocess.run([args.nexus, "cache", "build", args.composition, "--split", "train", "--json"] + cache,
                           check=True, capture_output=True, text=True)
    entries = json.loads(built.stdout)
    data_root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(args.composition)),
                                              comp.get("data", {}).get("root", "data")))
    tasks = []
    for h in comp["heads"]:
        mine = [e for e in entries if e["task"] == h["task"]]
        tasks.append({"name": h["task"], "head": h["name"],
                      "train": {e["teacher"]: torch.from_numpy(load_entry(e["dir"])) for e in mine},
                      "labels": labels_of(data_root, mine[0]["dataset"], mine[0]["split"])})

    overrides = ["--set", "trainer.steps=%d" % args.steps, "--set", "trainer.validate_every=%d" % args.steps,
                 "--set", "trainer.patience=0"]
    cpp, py = [], []
    with tempfile.TemporaryDirectory(prefix="nexus-bench-") as tmp:
        for r in range(args.runs):
            out = subprocess.run([args.nexus, "train", args.composition, "--run", os.path.join(tmp, "run-%d" % r),
                                  "--no-eval", "--json"] + overrides + cache, check=True, capture_output=True, text=True)
            cpp.append(json.loads(out.stdout)["samples_per_second"])
            py.append(train_reference(comp, tasks, args.steps))
            print("run %d: nexus %.0f samples/s, python %.0f samples/s" % (r + 1, cpp[-1], py[-1]), file=sys.stderr)
    result = {"composition": os.path.relpath(args.composition, ROOT), "steps": args.steps, "runs": args.runs,
              "batch_size": comp.get("trainer", {}).get("batch_size", 64),
              "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
              "nexus_samples_per_s": cpp, "python_samples_per_s": py,
              "nexus_median": statistics.median(cpp), "python_median": statistics.median(py)}
    result["ratio"] = result["nexus_median"] / result["python_median"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("train throughput on %s, %d steps x batch %d, median of %d runs:" %
              (result["composition"], args.steps, result["batch_size"], args.runs))
        print("  nexus (C++)      %10.0f samples/s" % result["nexus_median"])
        print("  python3-torch    %10.0f samples/s" % result["python_median"])
        print("  ratio            %10.2fx" % result["ratio"])


if __name__ == "__main__":
    main()
