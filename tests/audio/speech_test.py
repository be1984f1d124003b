"""The speech teachers end to end on real speech (fewer rows and steps than configs/speech.yaml):
1. `nexus train configs/speech.yaml` with resemblyzer and silero-vad on both speech tasks: exit 0
   (every retention contract met: the composite >= 0.97 x the better teacher's own probe), and the
   `real` split of human recordings scored and reported on its own (composite and both probes);
2. `nexus add-teacher` of resemblyzer with a speech task onto an image-only run: the image
   components keep their checksums, the router stays frozen (the only audio teacher), the image
   task's accuracy is exactly unchanged, and the new task meets its contract.

Usage: speech_test.py NEXUS_BINARY SOURCE_ROOT
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

nexus, root = sys.argv[1], Path(sys.argv[2])
work = Path(tempfile.mkdtemp(prefix="nexus-speech-test-"))
env = dict(os.environ)
env.setdefault("NEXUS_CACHE_DIR", str(work / "cache"))
failures = []


def expect(ok, what):
    print(("ok: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures.append(what)


def run(*args):
    r = subprocess.run([nexus, *args], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout[-3000:], r.stderr[-3000:])
    return r


rows = []
for task in ("language", "digit"):
    rows += ["--set", f"data.tasks.{task}.train_rows=800", "--set", f"data.tasks.{task}.val_rows=200",
             "--set", f"data.tasks.{task}.test_rows=300"]
r = run("train", str(root / "configs" / "speech.yaml"), "--run", str(work / "speech"), "--set", "trainer.steps=600",
        "--set", "trainer.validate_every=100", *rows)
expect(r.returncode == 0, f"nexus train configs/speech.yaml: exit {r.returncode} (0: every contract met)")
if r.returncode == 0:
    print(r.stdout[r.stdout.find("task "):])
    ev = {t["task"]: t for t in json.loads((work / "speech" / "eval.json").read_text())["tasks"]}
    for task, real_rows in (("language", 525), ("digit", 50)):
        t = ev[task]
        expect(set(t["probes"]) == {"resemblyzer", "silero_vad"} and t["retention"] >= 0.97,
               f"{task}: composite {t['accuracy']:.4f}, best probe {t['best_probe']:.4f} ({t['best_teacher']}), "
               f"retention {t['retention']:.4f} >= 0.97")
        (real,) = t["report_splits"]
        probes = [p.get("report_accuracy", {}).get("real") for p in t["probes"].values()]
        expect(real["split"] == "real" and real["rows"] == real_rows and all(p is not None for p in probes),
               f"{task} [real]: {real['rows']} human recordings scored apart: composite {real['accuracy']:.4f}, "
               f"probes {probes}")

# add-teacher onto an image-only run: a teacher file with the speech teacher and the language task.
base = work / "base"
r = run("train", str(root / "tests" / "cli" / "train_demo.yaml"), "--run", str(base), "--set", "trainer.steps=100")
expect(r.returncode == 0, "the image-only base run trains")
teacher = work / "speech_teacher.yaml"
teacher.write_text(f"""teachers:
  - name: resemblyzer
    plugin: torchscript
    modality: audio
    options: {{path: {root}/.cache/models/resemblyzer/model.pt, modality: audio, input_shape: [16000]}}
    tower: {{plugin: mlp, options: {{hidden: 256, dropout: 0.1}}}}
heads:
  - {{name: language, task: language, outputs: 5, plugin: linear}}
losses:
  - {{plugin: cross_entropy, head: language}}
data:
  tasks:
    language: {{dataset: speech_language, modality: audio, train_rows: 800, val_rows: 200, test_rows: 300}}
""")
r = run("add-teacher", str(base), "--teacher", str(teacher), "--out", str(work / "added"), "--steps", "400", "--json")
expect(r.returncode == 0, f"add-teacher of the speech teacher: exit {r.returncode}")
if r.returncode == 0:
    p = json.loads(r.stdout)
    frozen = [c for c in p["components"] if c["role"] == "frozen"]
    expect(len(frozen) == 5 and all(c["identical"] for c in frozen),
           f"{len(frozen)} image components frozen with identical checksums: {[c['name'] for c in frozen]}")
    expect(sorted(p["trained"]) == ["head.language", "norm.resemblyzer", "tower.resemblyzer"],
           f"trained only the speech components, not the router: {p['trained']}")
    t = {x["task"]: x for x in p["tasks"]}
    expect(t["fashion"]["after"] == t["fashion"]["before"],
           f"fashion exactly unchanged: {t['fashion']['before']:.4f} -> {t['fashion']['after']:.4f}")
    lang = t["language"]
    expect(not lang["violated"] and lang["after"] >= 0.97 * lang["new_teacher_probes"]["resemblyzer"],
           f"language (new): {lang['after']:.4f} vs resemblyzer's probe {lang['new_teacher_probes']['resemblyzer']:.4f}")
print(f"speech: {len(failures)} failed")
sys.exit(1 if failures else 0)
