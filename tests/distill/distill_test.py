"""`nexus distill` end to end on real encoders and real data (tests/distill/distill_demo.yaml):

- the student run: exit 0, its table beside the base run's eval.json, a servable run folder;
- kill -9 during distillation, then --resume: bitwise the same weights as an uninterrupted run;
- a bad student file: exit 2 naming file:line:col;
- `nexus train --resume` after kill -9 on the same two-task composition: bitwise the uninterrupted
  run's weights (each head sits out every other step; see training::define_gradients);
- the exported Hugging Face folder loaded by Python transformers (PyPI, scripts/transformers-pins.txt,
  on Debian's python3-torch) with no NEXUS code: on 16 sentences its embeddings, through the exported
  norm, tower and heads, match what `nexus serve` answers (cosine >= 0.9999, same labels).

Usage: distill_test.py NEXUS_BINARY SOURCE_TESTS_DIR PYTHON_PACKAGES_DIR
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "serving"))
from serving_lib import Checks, Server, Workdir  # noqa: E402

nexus, tests, packages = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
checks, work = Checks("distill"), Workdir(nexus)
expect = checks.expect
student_file = tests / "distill" / "student_demo.yaml"

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "a small domesticated carnivorous mammal with soft fur",
    "Café society in São Paulo, naïvely résumé-free.",
    "What is the meaning of 42?",
    "You will be successful in your work.",
    "an instrument for measuring the intensity of light",
    "Never trust a computer you can't throw out a window.",
    "the act of moving something from one place to another",
    "Ünïcödé and emoji 🙂 in one line",
    "A long sentence that goes on and on, far beyond the student's maximum length of thirty-two "
    "word pieces, so that truncation has to agree as well between the two tokenizers.",
    "1984, 2001 and 3.14159",
    "HELLO WORLD",
    "to cause to feel resentment or indignation",
    "It is easier to ask forgiveness than permission.",
    "Don't panic.",
    "a person who grows or makes or invents things",
]


def distill(out, *extra, check=True):
    p = subprocess.run([nexus, "distill", str(work.path / "run"), "--student", str(student_file), "--out", str(out),
                        "--json", *extra], env=work.env, capture_output=True, text=True)
    if check and p.returncode != 0:
        print(p.stderr[-3000:])
    return p


def ensure_transformers():
    pins = [l.strip() for l in (tests.parent / "scripts" / "transformers-pins.txt").read_text().splitlines()
            if l.strip() and not l.startswith("#")]
    stamp = packages / ".nexus-pins"
    if not (stamp.exists() and stamp.read_text() == "\n".join(pins) + "\n"):
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input",
                        "--target", str(packages), "--no-deps", "--upgrade", *pins], check=True)
        stamp.write_text("\n".join(pins) + "\n")
    sys.path.insert(0, str(packages))
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def python_outputs(model_dir):
    """What a Python user computes from the folder with transformers and the heads file alone."""
    import torch
    import transformers
    from safetensors.torch import load_file
    transformers.logging.set_verbosity_error()
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    heads = json.loads((Path(model_dir) / "nexus_heads.json").read_text())
    t = load_file(str(Path(model_dir) / "nexus_heads.safetensors"))
    with torch.no_grad():
        enc = tok(SENTENCES, padding=True, truncation=True, max_length=heads["max_length"], return_tensors="pt")
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        x = (hidden * mask).sum(1) / mask.sum(1)
        x = (x - t["norm.mean"]) * t["norm.inv_std"]
        tower = heads["tower"]
        assert tower["plugin"] == "mlp", tower
        n = len([k for k in tower["tensors"] if k.endswith(".weight")])
        for i in range(n):
            x = x @ t[f"tower.layers.{i}.weight"].T + t[f"tower.layers.{i}.bias"]
            if i + 1 < n:
                x = torch.nn.functional.gelu(x)
        logits = {h["task"]: x @ t[f"head.{h['name']}.linear.weight"].T + t[f"head.{h['name']}.linear.bias"]
                  for h in heads["heads"]}
    return x, logits, heads


def kill_after_first_checkpoint(args, folder):
    """Starts `nexus ARGS`, SIGKILLs it once FOLDER/checkpoints/latest names a step after 0; the step."""
    proc = subprocess.Popen([nexus, *args], env=work.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest, deadline, killed_at = folder / "checkpoints" / "latest", time.time() + 300, None
    while proc.poll() is None and time.time() < deadline:
        if latest.exists() and latest.read_text().strip() not in ("", "step-00000000"):
            killed_at = latest.read_text().strip()
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    return killed_at if proc.returncode == -signal.SIGKILL else None


try:
    demo = str(tests / "distill" / "distill_demo.yaml")
    p = subprocess.run([nexus, "train", demo, "--run", str(work.path / "run"), "--json"], env=work.env,
                       capture_output=True, text=True, check=True)
    trained = json.loads(p.stdout)["weights_sha256"]
    base_eval = json.loads((work.path / "run" / "eval.json").read_text())

    # 0. The trainer on two tasks taking turns: kill -9, --resume, the same weights.
    killed_at = kill_after_first_checkpoint(["train", demo, "--run", str(work.path / "run2"), "--no-eval"], work.path / "run2")
    p = subprocess.run([nexus, "train", demo, "--run", str(work.path / "run2"), "--no-eval", "--resume", "--json"],
                       env=work.env, capture_output=True, text=True)
    resumed = json.loads(p.stdout)["weights_sha256"] if p.returncode == 0 else ""
    expect(killed_at is not None and resumed == trained,
           f"nexus train killed at {killed_at}, resumed: weights {resumed[:16]} == uninterrupted {trained[:16]}")

    # 1. The student, uninterrupted.
    t0 = time.time()
    p = distill(work.path / "s1")
    expect(p.returncode == 0, f"distill exits 0 ({p.returncode}, {time.time() - t0:.1f} s)")
    out = json.loads(p.stdout) if p.returncode == 0 else {}
    tasks = {t["task"]: t for t in out.get("tasks", [])}
    expect(sorted(tasks) == ["fortunes", "supersense"], f"a row per text task: {sorted(tasks)}")
    expect(out.get("unlabelled_texts") == 32, f"32 unlabelled texts (blank lines skipped, CRLF read): {out.get('unlabelled_texts')}")
    for e in base_eval["tasks"]:
        t = tasks.get(e["task"], {})
        expect(t.get("composition") == e["accuracy"] and t.get("best_probe") == e["best_probe"] and
               t.get("rows") == e["rows"],
               f"{e['task']}: composition {t.get('composition')} and best probe {t.get('best_probe')} over {t.get('rows')} "
               f"rows are the base run's eval.json's ({e['accuracy']}, {e['best_probe']}, {e['rows']})")
        expect(0 < t.get("student", 0) <= 1 and abs(t.get("retention", 0) - t.get("student", 0) / e["best_probe"]) < 1e-9,
               f"{e['task']}: student {t.get('student')}, retention {t.get('retention')} = student / best probe")
    run_json = json.loads((work.path / "s1" / "run.json").read_text())
    expect(list(run_json.get("teachers", {})) == ["student"] and run_json.get("kind") == "distill",
           f"the student is a run with one teacher: {list(run_json.get('teachers', {}))}, kind {run_json.get('kind')}")
    metrics = [json.loads(l) for l in (work.path / "s1" / "metrics.jsonl").read_text().splitlines()]
    vals = [m for m in metrics if "val_loss" in m]
    expect([m["step"] for m in vals] == [0, 8, 16], f"validations at steps {[m['step'] for m in vals]}")
    expect(vals[-1]["val_loss"] < vals[0]["val_loss"],
           f"distillation lowers the validation loss: {vals[0]['val_loss']:.4f} -> {vals[-1]['val_loss']:.4f}")

    # 2. kill -9 after the first checkpoint, then --resume: the same weights, bit for bit.
    s2 = work.path / "s2"
    killed_at = kill_after_first_checkpoint(["distill", str(work.path / "run"), "--student", str(student_file), "--out",
                                             str(s2), "--json"], s2)
    expect(killed_at is not None, f"distill killed with SIGKILL at {killed_at}")
    p = distill(s2, "--resume")
    resumed = json.loads(p.stdout) if p.returncode == 0 else {}
    expect(resumed.get("resumed") is True, f"--resume continued from {killed_at}")
    expect(resumed.get("weights_sha256") and resumed.get("weights_sha256") == out.get("weights_sha256"),
           f"resumed weights {resumed.get('weights_sha256', '')[:16]} == uninterrupted {out.get('weights_sha256', '')[:16]}")
    same_file = (s2 / "model" / "model.safetensors").read_bytes() == (work.path / "s1" / "model" / "model.safetensors").read_bytes()
    expect(same_file, "the exported model.safetensors files are byte-identical")
    p = distill(work.path / "s1", check=False)
    expect(p.returncode == 2 and "--resume" in p.stderr, f"a folder with checkpoints needs --resume (exit {p.returncode})")
    kept = (s2 / "model" / "model.safetensors").read_bytes() == (work.path / "s1" / "model" / "model.safetensors").read_bytes()
    expect(kept, "the refused distill left the finished student's model.safetensors as it was")

    # 3. A bad student file: exit 2, with where.
    bad = work.path / "bad.yaml"
    bad.write_text("nexus_student: 1\ntext: {from_teacher: paraphrase, layer: 2}\ntrainer: {steps: -3}\n")
    p = subprocess.run([nexus, "distill", str(work.path / "run"), "--student", str(bad), "--out", str(work.path / "s3")],
                       env=work.env, capture_output=True, text=True)
    expect(p.returncode == 2 and f"{bad}:2:" in p.stderr and "did you mean 'layers'" in p.stderr and f"{bad}:3:" in p.stderr,
           f"bad student file: exit {p.returncode}, {p.stderr.strip()[:300]!r}")
    p = subprocess.run([nexus, "distill", str(work.path / "run"), "--student", str(student_file), "--out",
                        str(work.path / "s4"), "--set", "text.from_teacher=nobody"], env=work.env, capture_output=True, text=True)
    expect(p.returncode == 2 and "minilm, paraphrase" in p.stderr, f"unknown teacher: exit {p.returncode}, {p.stderr.strip()[-200:]!r}")
    p = subprocess.run([nexus, "distill", str(work.path / "run"), "--student", str(student_file), "--out",
                        str(work.path / "s5"), "--set", "unlabelled=[missing.txt]"], env=work.env, capture_output=True, text=True)
    expect(p.returncode == 2 and "missing.txt: cannot read" in p.stderr, f"missing unlabelled file: exit {p.returncode}, {p.stderr.strip()[-200:]!r}")

    # 4. The folder in Python transformers, against the served student.
    ensure_transformers()
    z, logits, heads = python_outputs(str(work.path / "s1" / "model"))
    server = Server(work, work.path / "s1")
    try:
        status, body = server.request("POST", "/v1/embed", {"task": "supersense", "inputs": SENTENCES})
        served = body.get("embeddings", []) if status == 200 else []
        status2, body2 = server.request("POST", "/v1/predict", {"task": "supersense", "inputs": SENTENCES})
        labels = [p["label"] for p in body2.get("predictions", [])] if status2 == 200 else []
    finally:
        expect(server.stop() == 0, "the student's server shuts down cleanly")
    import torch
    expect(len(served) == len(SENTENCES), f"served {len(served)} embeddings (status {status})")
    if len(served) == len(SENTENCES):
        cos = torch.nn.functional.cosine_similarity(z, torch.tensor(served), dim=1)
        expect(bool((cos >= 0.9999).all()), f"transformers + nexus_heads vs nexus serve: lowest cosine {cos.min().item():.7f} "
               f"over {len(SENTENCES)} sentences")
    classes = next(h["classes"] for h in heads["heads"] if h["task"] == "supersense")
    expect(len(classes) == 38 and len(set(classes)) == 38, f"nexus_heads.json names the 38 supersenses: {classes[:3]}...")
    py_labels = logits["supersense"].argmax(1).tolist()
    expect(labels == py_labels, f"the same supersense labels ({sum(a == b for a, b in zip(labels, py_labels))}/{len(SENTENCES)})")
finally:
    work.remove()
checks.finish()
