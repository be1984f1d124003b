"""Checks the proof that examples/add_teacher/speech.sh produced; prints the figures.

Usage: speech_check.py RUN (the run add-teacher wrote). Exits 1 naming every expectation that does
not hold: every text and image component frozen with an identical checksum, the router untouched
(the speech teacher is the only audio teacher), the old tasks' accuracy exactly as before, only
the speech components trained, and each speech task at >= 0.97 of resemblyzer's own probe.
"""
import json
import sys
from pathlib import Path

run = Path(sys.argv[1])
proof = json.loads((run / "proof.json").read_text())
evaluation = json.loads((run / "eval.json").read_text())
failures = []


def expect(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


frozen = [c for c in proof["components"] if c["role"] == "frozen"]
names = sorted(c["name"] for c in frozen)
old = ["fmnist_cnn", "minilm", "paraphrase"]
wanted = sorted([f"norm.{t}" for t in old] + [f"tower.{t}" for t in old] + ["head.fashion", "head.fortunes", "head.supersense"])
expect(names == wanted and all(c["identical"] for c in frozen),
       f"{len(frozen)} text and image components frozen, checksums identical: {', '.join(names)}")
expect(sorted(proof["trained"]) == ["head.digit", "head.language", "norm.resemblyzer", "tower.resemblyzer"],
       f"trained only the speech components: {proof['trained']} (the router is kept)")
tasks = {t["task"]: t for t in proof["tasks"]}
for name in ("supersense", "fortunes", "fashion"):
    t = tasks[name]
    expect(t["after"] == t["before"], f"{name}: {t['before']:.4f} -> {t['after']:.4f} (unchanged)")
reports = {t["task"]: {r["split"]: r for r in t.get("report_splits", [])} for t in evaluation["tasks"]}
for name in ("language", "digit"):
    t = tasks[name]
    probe = t["new_teacher_probes"]["resemblyzer"]
    expect(t["after"] >= 0.97 * probe, f"{name} (new): {t['after']:.4f}, resemblyzer's own probe {probe:.4f}: "
                                        f"retention {t['after'] / probe:.4f} >= 0.97")
    real = reports.get(name, {}).get("real")
    if real:
        print(f"      {name} on real recordings ({real['rows']} clips, reported, not contracted): composite "
              f"{real['accuracy']:.4f}, best probe {real['best_probe']:.4f} ({real['best_teacher']})")
expect(proof["status"] == "ok", "add-teacher status ok")
sys.exit(1 if failures else 0)
