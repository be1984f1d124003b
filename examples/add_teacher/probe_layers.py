#!/usr/bin/python3
"""Which hidden state of a new teacher should the system read? A linear probe per layer, per task.

Decoder LLMs keep their most transferable features in the middle layers, not at the output, and
which layer is best depends on the task. Before adding such a teacher, cache its pooled states at
several layers in one pass (the teacher's `layer` option takes a list; the states are concatenated)
and train a linear probe on each layer's slice, on the tasks of a composition:

    /usr/bin/python3 examples/add_teacher/probe_layers.py --composition configs/quickstart.yaml \\
        --teacher configs/teachers/smollm2.yaml --layers 4,8,12,16,20,24,-1 \\
        --train-rows 2000 --test-rows 1000

The features come from `nexus cache build` (so the plugin, tokenizer and pooling are exactly what
training will use) into --cache (default build/probe-cache; reruns reuse it). The probe is
multinomial logistic regression on standardised features, trained full-batch with AdamW for a
fixed number of epochs on the first --train-rows rows of each task's train split and scored on the
first --test-rows rows of its test split (the splits are stored in hash order: prefixes are uniform
samples). Needs Debian's python3-torch, python3-numpy and python3-yaml.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from feature_cache import load_entry  # noqa: E402


def text_labels(data_root, dataset, split, rows):
    with open(os.path.join(data_root, dataset, split + ".tsv"), encoding="utf-8") as f:
        lines = f.read().split("\n")[1:]
    return torch.tensor([int(l.split("\t")[1]) for l in lines if l][:rows], dtype=torch.int64)


def probe(x_train, y_train, x_test, y_test, classes, epochs, seed):
    """Test accuracy of a linear classifier; standardisation keeps one learning rate right for
    layers whose activations differ in scale by orders of magnitude."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    torch.manual_seed(seed)
    model = torch.nn.Linear(x_train.shape[1], classes)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x_train), y_train).backward()
        opt.step()
    with torch.no_grad():
        return (model(x_test).argmax(1) == y_test).float().mean().item()


def write_composition(comp_path, teacher_path, layers, train_rows, test_rows, out_dir):
    """The composition's tasks of the teacher's modality, with only the new teacher (its `layer`
    replaced by the list to probe); paths made absolute so the file can live anywhere."""
    with open(comp_path) as f:
        comp = yaml.safe_load(f)
    with open(teacher_path) as f:
        teacher = yaml.safe_load(f)
    opts = dict(teacher.get("options") or {})
    if "path" in opts and not os.path.isabs(opts["path"]):
        opts["path"] = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(teacher_path)), opts["path"]))
    old_layers = opts.get("layer", -1)
    old_layers = old_layers if isinstance(old_layers, list) else [old_layers]
    if teacher["width"] % len(old_layers):
        raise SystemExit("the teacher's width %d is not a multiple of its %d layers" % (teacher["width"], len(old_layers)))
    hidden = teacher["width"] // len(old_layers)
    opts["layer"] = layers
    teacher = dict(teacher, options=opts, width=hidden * len(layers))
    data_root = comp["data"].get("root", ".")
    if not os.path.isabs(data_root):
        data_root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(comp_path)), data_root))
    tasks = {name: dict(t, train_rows=train_rows, test_rows=test_rows, val_rows=min(train_rows, 64))
             for name, t in comp["data"]["tasks"].items() if t.get("modality") == teacher["modality"]}
    if not tasks:
        raise SystemExit("the composition has no %s task" % teacher["modality"])
    heads = [h for h in comp["heads"] if h["task"] in tasks]
    out = {"nexus": comp.get("nexus", 1), "name": "probe-layers", "shared_dim": comp["shared_dim"],
           "teachers": [teacher], "router": comp["router"], "heads": heads,
           "losses": [l for l in comp["losses"] if l["head"] in {h["name"] for h in heads}],
           "data": {"root": data_root, "tasks": tasks}, "trainer": {"steps": 1}}
    path = os.path.join(out_dir, "probe.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(out, f, sort_keys=False)
    return path, data_root, tasks, {h["task"]: h["outputs"] for h in heads}, hidden


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--composition", required=True, help="composition whose tasks to probe on")
    ap.add_argument("--teacher", required=True, help="teacher file (as for nexus add-teacher)")
    ap.add_argument("--layers", required=True, help="comma-separated hidden-state indices (negative from the end)")
    ap.add_argument("--train-rows", type=int, default=2000)
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--cache", default=os.path.join(ROOT, "build", "probe-cache"))
    ap.add_argument("--nexus", default=os.path.join(ROOT, "build", "bin", "nexus"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    layers = [int(v) for v in args.layers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        comp, data_root, tasks, classes, hidden = write_composition(
            args.composition, args.teacher, layers, args.train_rows, args.test_rows, tmp)
        proc = subprocess.run([args.nexus, "cache", "build", comp, "--split", "train,test", "--json",
                               "--cache", args.cache], stdout=subprocess.PIPE, text=True)
        if proc.returncode:
            sys.exit(proc.returncode)
    entries = {(e["task"], e["split"].split("[")[0]): e for e in json.loads(proc.stdout)}  # "train[:2000]"
    results = {}
    for task, spec in tasks.items():
        feats = {s: torch.from_numpy(load_entry(entries[(task, s)]["dir"])) for s in ("train", "test")}
        labels = {s: text_labels(data_root, spec["dataset"], s, feats[s].shape[0]) for s in ("train", "test")}
        results[task] = {}
        for i, layer in enumerate(layers):
            cols = slice(i * hidden, (i + 1) * hidden)
            results[task][layer] = probe(feats["train"][:, cols], labels["train"], feats["test"][:, cols],
                                         labels["test"], classes[task], args.epochs, seed=0)
    if args.json:
        print(json.dumps({"layers": layers, "accuracy": results}, indent=2))
        return
    print("linear-probe test accuracy per layer (%d train / %d test rows per task)" % (args.train_rows, args.test_rows))
    print("| layer | " + " | ".join(tasks) + " |")
    print("|---|" + "---|" * len(tasks))
    for layer in layers:
        print("| %d | " % layer + " | ".join("%.4f" % results[t][layer] for t in tasks) + " |")


if __name__ == "__main__":
    main()
