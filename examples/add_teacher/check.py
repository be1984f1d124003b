"""Checks the proofs that examples/add_teacher/run.sh produced; prints the figures.

Usage: check.py WORK_DIR. Exits 1 naming every expectation that does not hold. With
NEXUS_DEMO_NO_TIMING=1 (CI: shared, noisy machines) the wall-time ratio is reported, not asserted.
"""
import json
import os
import sys
from pathlib import Path

work = Path(sys.argv[1])
added = json.loads((work / "added" / "proof.json").read_text())
removed = json.loads((work / "removed" / "proof.json").read_text())
failures = []


def expect(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


tasks = {t["task"]: t for t in added["tasks"]}
print("add-teacher (minilm):")
for name in ("supersense", "fortunes"):
    t = tasks[name]
    probe = t["new_teacher_probes"]["minilm"]
    expect(t["after"] >= 0.97 * probe and t["after"] > t["before"],
           f"{name}: {t['before']:.4f} -> {t['after']:.4f}, minilm's own probe {probe:.4f} "
           f"(after / probe = {t['after'] / probe:.4f} >= 0.97, and above the old composite)")
f = tasks["fashion"]
expect(f["after"] >= 0.995 * f["before"],
       f"fashion: {f['before']:.4f} -> {f['after']:.4f} (ratio {f['after'] / f['before']:.4f} >= 0.995)")
frozen = [c for c in added["components"] if c["role"] == "frozen"]
expect(frozen and all(c["identical"] for c in frozen),
       f"{len(frozen)} frozen components, checksums identical: {', '.join(c['name'] for c in frozen)}")
expect(sorted(added["trained"]) == ["norm.minilm", "router", "tower.minilm"], f"trained only {added['trained']}")
inc, full = added["timing"], added["full_retrain"]["timing"]
timing_ok = added["ratio_train_and_eval"] <= 0.25 or os.environ.get("NEXUS_DEMO_NO_TIMING") == "1"
expect(timing_ok,
       f"wall time: incremental {inc['train_and_eval_seconds']:.1f} s (training {inc['train_seconds']:.1f} s, "
       f"evaluation {inc['eval_seconds']:.1f} s) vs full retrain {full['train_and_eval_seconds']:.1f} s "
       f"(training {full['train_seconds']:.1f} s, evaluation {full['eval_seconds']:.1f} s): "
       f"{added['ratio_train_and_eval']:.3f} <= 0.25")
print(f"      (features: incremental {inc['cache_seconds']:.1f} s, full retrain {full['cache_seconds']:.1f} s; "
      f"whole commands {inc['total_seconds']:.1f} s vs {full['total_seconds']:.1f} s = {added['ratio_total']:.3f})")
for name, acc in added["full_retrain"]["accuracy"].items():
    print(f"      full retrain {name}: {acc:.4f} (incremental {tasks[name]['after']:.4f})")
expect(added["status"] == "ok", "add-teacher status ok")

print("remove-teacher (fmnist_cnn):")
lost = [t["task"] for t in removed["lost_tasks"]]
expect(lost == ["fashion"], f"lost tasks reported: {lost}")
for t in removed["tasks"]:
    expect(not t["violated"], f"{t['task']}: {t['before']:.4f} -> {t['after']:.4f}, retention {t['retention']:.4f} "
                              f">= contract {t['contract']}")
expect(removed["status"] == "ok" and removed["frozen_identical"], "remove-teacher status ok, frozen checksums identical")
sys.exit(1 if failures else 0)
