"""Checks the proofs that examples/add_teacher/repair.sh produced; prints the figures.

Usage: repair_check.py WORK_DIR. Exits 1 naming every expectation that does not hold.
"""
import json
import sys
from pathlib import Path

work = Path(sys.argv[1])
router_only = json.loads((work / "router-only.rejected" / "proof.json").read_text())
repaired = json.loads((work / "repaired" / "proof.json").read_text())
failures = []


def expect(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def tasks(proof):
    return {t["task"]: t for t in proof["tasks"]}


print("the router alone (--repair router):")
for name, t in tasks(router_only).items():
    print(f"      {name}: {t['before']:.4f} -> {t['after']:.4f}, retention {t['retention']:.4f} (contract {t['contract']})")
expect(router_only["status"] == "failing" and router_only["violations"],
       f"rejected: {'; '.join(router_only['violations'])}")

print("with the repair (--repair auto):")
for st in repaired["repair"]["stages"]:
    checks = ", ".join(f"{c['task']} {c['retention']:.4f}" for c in st["checks"])
    print(f"      {st['scope']}: {', '.join(st['widened'])}; retention after it {checks}")
for name, t in tasks(repaired).items():
    expect(not t["violated"], f"{name}: {t['before']:.4f} -> {t['after']:.4f}, retention {t['retention']:.4f} "
                              f">= contract {t['contract']}")
roles = {c["name"]: c for c in repaired["components"]}
fashion = ["norm.fmnist_cnn", "tower.fmnist_cnn", "head.fashion"]
expect(all(roles[n]["role"] == "frozen" and roles[n]["identical"] for n in fashion),
       f"fashion's components bit-identical: {', '.join(n + ' ' + roles[n]['after'][:16] for n in fashion)}")
widened = sorted(n for n, c in roles.items() if c["role"] == "widened")
expect({"tower.minilm", "tower.paraphrase"} <= set(widened) and not any("fashion" in n or "fmnist" in n for n in widened),
       f"widened only text components: {', '.join(widened)}")
expect(all(roles[n]["why"] for n in widened), "each widened component says why")
expect(repaired["status"] == "ok" and repaired["frozen_identical"], "status ok, frozen checksums identical")
sys.exit(1 if failures else 0)
