"""A checkpoint opens in Python with the `safetensors` package (PyPI) and numpy, without NEXUS:
every tensor file of a trained run's checkpoint, with the names and shapes the composition gives.
And loading a checkpoint runs no code: a pickle that runs code when it is loaded, put where the old
format kept the head, is refused unread by `nexus eval` (exit 2, saying how to convert), and
`nexus convert-run` on a folder that is not a run is refused.

Usage: checkpoint_python_test.py NEXUS_BINARY SOURCE_TESTS_DIR (run with Debian's python3, which
has python3-numpy and python3-torch; scripts/install-deps.sh installs safetensors for it)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

try:
    from safetensors import safe_open
    from safetensors.numpy import load_file
except ImportError:
    sys.exit("checkpoint_python_test: the safetensors package is missing (scripts/install-deps.sh installs it)")

nexus, tests = sys.argv[1], Path(sys.argv[2])
work = Path(tempfile.mkdtemp())
env = dict(os.environ, NEXUS_CACHE_DIR=str(work / "cache"))
env.pop("NEXUS_PLUGIN_PATH", None)
failures = []


def expect(ok, what):
    print(("ok: " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


try:
    run = work / "run"
    subprocess.run([nexus, "train", str(tests / "cli" / "train_demo.yaml"), "--run", str(run), "--no-eval",
                    "--set", "trainer.steps=60"], env=env, check=True, stdout=subprocess.DEVNULL)
    best = run / "checkpoints" / (run / "checkpoints" / "best").read_text().strip()
    files = sorted(p.name for p in best.iterdir())
    modules = {p.name[: -len(".safetensors")]: load_file(str(p)) for p in best.glob("*.safetensors")
               if p.name not in ("optimizer.safetensors", "rng.safetensors")}
    expect(not any(f.endswith(".pt") for f in files) and {"router", "head.clothes", "tower.pixels", "tower.pooled"} <= set(modules),
           f"one safetensors file per module, no pickles: {files}")
    with safe_open(str(best / "head.clothes.safetensors"), framework="numpy") as f:
        expect(f.metadata() == {"format": "pt"}, f"metadata: {f.metadata()}")
    # The composition: shared_dim 32, 10 classes; a linear tower from 784 pixels, an MLP (hidden 64)
    # from 49 pooled values.
    head = modules["head.clothes"]
    expect(head["linear.weight"].shape == (10, 32) and head["linear.bias"].shape == (10,)
           and head["linear.weight"].dtype == np.float32, f"the head is 10 x 32 float32: {({k: v.shape for k, v in head.items()})}")
    shapes = {k: v.shape for k, v in modules["tower.pixels"].items()}
    expect(any(s == (32, 784) for s in shapes.values()), f"tower.pixels maps 784 to 32: {shapes}")
    shapes = {k: v.shape for k, v in modules["tower.pooled"].items()}
    expect(any(s == (64, 49) for s in shapes.values()) and any(s == (32, 64) for s in shapes.values()),
           f"tower.pooled is 49 -> 64 -> 32: {shapes}")
    expect(all(np.isfinite(t).all() for m in modules.values() for t in m.values()), "every module's values are finite")
    # The optimizer: its JSON names each parameter; its moments have that parameter's shape.
    opt = json.loads((best / "optimizer.json").read_text())
    moments = load_file(str(best / "optimizer.safetensors"))
    at_step = int(best.name[len("step-"):])
    mismatches = []
    for i, p in enumerate(opt["params"]):
        module, param = p["name"].split("/", 1)
        if param not in modules.get(module, {}):
            mismatches.append(p["name"] + " (not in its module's file)")
        elif p["step"] is not None and (moments[f"{i}.exp_avg"].shape != modules[module][param].shape or not 0 < p["step"] <= at_step):
            mismatches.append(p["name"])
    expect(opt["optimizer"] == "AdamW" and opt["params"] and not mismatches,
           f"optimizer.json names every parameter, each moment has its shape: {mismatches} {opt['params'][:2]}")
    rng = load_file(str(best / "rng.safetensors"))
    expect(set(rng) == {"sampler", "global"} and all(t.dtype == np.uint8 for t in rng.values()), "generator states as uint8")

    # A pickle that runs code when it is loaded, where the old format kept the head: refused unread.
    evil = work / "evil"
    shutil.copytree(run, evil)
    evil_best = evil / "checkpoints" / best.name
    (evil_best / "head.clothes.safetensors").unlink()
    # torch.jit.script reads the class's source, so the maker is a file (with python3-torch).
    maker = work / "make_payload.py"
    maker.write_text("""
import sys, torch
from typing import Tuple
class Payload(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.x = 1
    @torch.jit.export
    def __getstate__(self) -> Tuple[int, bool]:
        return (self.x, self.training)
    @torch.jit.export
    def __setstate__(self, state: Tuple[int, bool]) -> None:
        raise RuntimeError("NEXUS-TEST: code in a checkpoint ran")
torch.jit.save(torch.jit.script(Payload()), sys.argv[1])
""")
    subprocess.run(["/usr/bin/python3", str(maker), str(evil_best / "head.clothes.pt")], check=True)
    r = subprocess.run([nexus, "eval", str(evil)], env=env, capture_output=True, text=True, timeout=300)
    expect(r.returncode == 2 and "code in a checkpoint ran" not in r.stderr and "old pickled format (head.clothes.pt)" in r.stderr
           and f"nexus convert-run {evil}" in r.stderr, f"a pickled head is refused unread: exit {r.returncode}: {r.stderr.strip()[-300:]}")
    r = subprocess.run([nexus, "convert-run", str(work / "cache")], env=env, capture_output=True, text=True)
    expect(r.returncode == 2 and "has no checkpoints folder" in r.stderr, f"convert-run of a non-run: exit {r.returncode}")
    r = subprocess.run([nexus, "convert-run", str(run)], env=env, capture_output=True, text=True)
    expect(r.returncode == 0 and "nothing to convert" in r.stdout, f"convert-run of a current run changes nothing: {r.stdout.strip()}")
finally:
    shutil.rmtree(work, ignore_errors=True)

print(f"{len(failures)} failures")
sys.exit(1 if failures else 0)
