"""End-to-end checks of `nexus serve`: predictions and embeddings over HTTP, bad input answered
with a 4xx and never a crash (1,000+ malformed requests), micro-batching (concurrent requests share
a forward, and an input that makes a teacher throw fails only its own request), the admin token,
and atomic swaps of whole runs and of single components (a broken one is rejected and the old set
keeps serving).

Usage: serve_test.py NEXUS_BINARY SOURCE_TESTS_DIR
"""
import random
import signal
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from serving_lib import Checks, Server, Workdir

nexus, tests = sys.argv[1], Path(sys.argv[2])
checks, work = Checks("serve"), Workdir(nexus)
expect, run, env = checks.expect, work.run, work.env


demo = str(tests / "cli" / "serve_demo.yaml")
run("train", demo, "--run", str(work.path / "a"), "--no-eval", "--set", "trainer.steps=100")
run("train", demo, "--run", str(work.path / "b"), "--no-eval", "--set", "trainer.steps=100", "--set", "trainer.seed=8")
run("train", str(tests / "cli" / "serve_demo_wide.yaml"), "--run", str(work.path / "wide"), "--no-eval", "--set", "trainer.steps=100")
broken = work.path / "broken"
shutil.copytree(work.path / "b", broken)
best = (broken / "checkpoints" / "best").read_text().strip()
(broken / "checkpoints" / best / "head.clothes.safetensors").write_bytes(b"not a checkpoint")
(work.path / "token").write_text("s3cret\n")
(work.path / "live").symlink_to(work.path / "b")  # what a deploy re-points; SIGHUP re-reads it

# A GPU that is not there is refused at start, before listening (exit 2, with the reason).
gpu = subprocess.run([nexus, "serve", str(work.path / "a"), "--port", "0", "--device", "cuda:0"], env=env,
                     capture_output=True, text=True, timeout=120)
expect(gpu.returncode == 2 and "device 'cuda:0' asked for" in gpu.stderr,
       f"serve --device cuda:0 without a GPU: exit {gpu.returncode}: {gpu.stderr.strip()[:120]}")
server = Server(work, work.path / "a", "--admin-token-file", str(work.path / "token"), "--watch", str(work.path / "live"),
                "--max-body", "200000", "--max-delay-ms", "20")
request = server.request
try:
    line = server.first_line
    expect(line.startswith("nexus serve: a@") and "127.0.0.1" in line, f"listening on loopback: {line.strip()}")

    status, health = request("GET", "/healthz")
    expect(status == 200 and health == {"status": "ok"}, "healthz")
    status, ready = request("GET", "/readyz")
    expect(status == 200 and ready["ready"] and ready["version"].startswith("a@"), "readyz names the version")
    expect(ready.get("device") == "cpu", f"readyz names the device (device: auto on a machine without a GPU): {ready.get('device')}")

    rng = random.Random(0)
    images = [[rng.randrange(256) for _ in range(784)] for _ in range(8)]
    status, pred = request("POST", "/v1/predict", {"task": "fashion", "inputs": images, "routing": True})
    preds = pred.get("predictions", []) if isinstance(pred, dict) else []
    expect(status == 200 and len(preds) == 8 and all(abs(sum(p["scores"]) - 1) < 1e-4 for p in preds)
           and all(0 <= p["label"] < 10 for p in preds) and all(set(p["routing"]) == {"pixels", "pooled"} for p in preds),
           "predict: 8 images, labels, normalised scores, routing weights")
    nested = [[img[r * 28:(r + 1) * 28] for r in range(28)] for img in images]
    status, pred2 = request("POST", "/v1/predict", {"task": "fashion", "inputs": nested})
    expect(status == 200 and [p["label"] for p in pred2["predictions"]] == [p["label"] for p in preds],
           "an image given as 28 rows of 28 gives the same predictions")
    status, emb = request("POST", "/v1/embed", {"task": "fashion", "inputs": images[:3]})
    expect(status == 200 and len(emb["embeddings"]) == 3 and len(emb["embeddings"][0]) == 32, "embed: 3 x 32 shared-space vectors")

    # Malformed requests: each must get its 4xx and a message; the server must keep answering.
    bad = [
        ("malformed JSON", dict(body=b"{not json"), 400),
        ("a JSON array body", dict(body=[1, 2]), 400),
        ("no task", dict(body={"inputs": images[:1]}), 400),
        ("a task of the wrong type", dict(body={"task": 3, "inputs": images[:1]}), 400),
        ("an unknown task", dict(body={"task": "nosuch", "inputs": images[:1]}), 404),
        ("no inputs", dict(body={"task": "fashion"}), 400),
        ("empty inputs", dict(body={"task": "fashion", "inputs": []}), 400),
        ("an image of the wrong shape", dict(body={"task": "fashion", "inputs": [[1, 2, 3]]}), 400),
        ("an image holding a string", dict(body={"task": "fashion", "inputs": [["x"] * 784]}), 400),
        ("too many inputs", dict(body={"task": "fashion", "inputs": [[0]] * 257}), 400),
        ("an oversized body", dict(body=b"[" + b"0," * 150000 + b"0]"), 413),
        ("binary garbage", dict(body=bytes(rng.randrange(256) for _ in range(300))), 400),
    ]
    counts = {}
    for i in range(1100):
        what, kw, want = bad[i % len(bad)]
        status, body = request("POST", "/v1/predict", **kw)
        ok = status == want and (want == 413 or (isinstance(body, dict) and body.get("error")))
        counts[what] = counts.get(what, 0) + (0 if ok else 1)
    expect(server.proc.poll() is None and not any(counts.values()),
           f"1,100 malformed requests ({len(bad)} kinds) each answered with its 4xx: wrong answers {counts}")
    status, again = request("POST", "/v1/predict", {"task": "fashion", "inputs": images})
    plain = [{k: v for k, v in p.items() if k != "routing"} for p in preds]
    expect(status == 200 and again["predictions"] == plain and again["version"] == pred["version"],
           "still answering, with the same predictions")

    # Micro-batching: concurrent requests share forwards and each gets its own rows back; an image
    # that makes the `pixels` teacher raise fails its own request, not the ones batched with it.
    def batched_metrics():
        _, m = request("GET", "/metrics")
        val = lambda name: sum(float(l.rsplit(" ", 1)[1]) for l in m.splitlines() if l.startswith(name))
        return (val('nexus_batches_total{result="ok"}'), val('nexus_batched_requests_total{result="ok"}'),
                val('nexus_batches_total{result="failed"}'))

    singles = {}
    for i, img in enumerate(images):
        singles[i] = request("POST", "/v1/predict", {"task": "fashion", "inputs": [img]})[1]["predictions"][0]
    poison = [255, 255, 255] + images[0][3:]  # the `pixels` teacher raises on it (serve_demo.yaml)
    before = batched_metrics()
    for round_ in range(3):
        answers = {}

        def client(i):
            body = {"task": "fashion", "inputs": [poison if i == len(images) else images[i]]}
            answers[i] = request("POST", "/v1/predict", body)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(images) + 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        good = all(answers[i][0] == 200 and answers[i][1]["predictions"][0]["label"] == singles[i]["label"]
                   and max(abs(x - y) for x, y in zip(answers[i][1]["predictions"][0]["scores"], singles[i]["scores"])) < 1e-5
                   for i in range(len(images)))
        bad_status, bad_body = answers[len(images)]
        expect(good and bad_status == 422 and "incident" in bad_body.get("error", ""),
               f"round {round_}: 8 concurrent requests answered with their own rows; the poisoned one "
               f"failed alone ({bad_status}: {bad_body.get('error', '')[:90]})")
    after = batched_metrics()
    batches, carried, failed = (a - b for a, b in zip(after, before))
    # The 24 good requests are each answered by exactly one successful forward; every forward
    # holding a poisoned image fails (alone, or shared and then retried one by one).
    expect(carried == 24 and failed >= 3,
           f"24 good concurrent requests went through {batches:.0f} successful forwards; {failed:.0f} forwards failed")
    # Without a poisoned one, concurrent requests share forwards.
    before = batched_metrics()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batches, carried, _ = (a - b for a, b in zip(batched_metrics(), before))
    expect(carried == 8 and batches < carried and all(answers[i][0] == 200 for i in range(len(images))),
           f"8 good concurrent requests shared forwards: {batches:.0f} forwards for {carried:.0f} requests")

    # Admin: the token is required; a swap is atomic; a broken run is rejected and service goes on.
    status, _ = request("POST", "/admin/swap", {"run": str(work.path / "b")})
    expect(status == 401, "swap without the token: 401")
    status, _ = request("POST", "/admin/swap", {"run": str(work.path / "b")}, {"Authorization": "Bearer wrong"})
    expect(status == 401, "swap with a wrong token: 401")
    auth = {"Authorization": "Bearer s3cret"}
    status, swapped = request("POST", "/admin/swap", {"run": str(work.path / "b")}, auth)
    expect(status == 200 and swapped["version"].startswith("b@") and swapped["previous"] == pred["version"],
           f"swap to run b: {swapped}")
    status, pb = request("POST", "/v1/predict", {"task": "fashion", "inputs": images})
    expect(status == 200 and pb["version"] == swapped["version"], "responses now name run b")
    status, rejected = request("POST", "/admin/swap", {"run": str(broken)}, auth)
    expect(status == 422 and "corrupt checkpoint" in rejected.get("error", "") and swapped["version"] in rejected["error"],
           f"a swap to a run with a corrupt checkpoint is rejected with its reason: {rejected.get('error', '')[:160]}")
    status, pb2 = request("POST", "/v1/predict", {"task": "fashion", "inputs": images})
    expect(status == 200 and pb2 == pb, "the old run keeps serving after the rejected swap")
    status, back = request("POST", "/admin/swap", {"run": str(work.path / "a")}, auth)
    status, pa = request("POST", "/v1/predict", {"task": "fashion", "inputs": images})
    expect(pa["predictions"] == plain and pa["version"] == pred["version"], "swapping back gives run a's predictions again")
    # Components: b's head over a's teachers, towers and router; a teacher with its norm and tower.
    status, comp = request("POST", "/admin/swap", {"run": str(work.path / "b"), "components": ["head.clothes"]}, auth)
    expect(status == 200 and comp["version"].startswith(pred["version"].split("#")[0] + "+head.clothes=b@"),
           f"swap one component, b's head: {comp.get('version')}")
    status, pc = request("POST", "/v1/predict", {"task": "fashion", "inputs": images})
    expect(status == 200 and pc["version"] == comp["version"] and pc["predictions"] != plain, "responses name the mix and differ from run a's")
    status, rej = request("POST", "/admin/swap", {"run": str(broken), "components": ["head.clothes"]}, auth)
    expect(status == 422 and "corrupt checkpoint" in rej.get("error", "") and comp["version"] in rej["error"],
           f"a corrupt component is rejected with its reason: {rej.get('error', '')[:120]}")
    status, rej = request("POST", "/admin/swap", {"run": str(work.path / "wide"), "components": ["tower.pooled"]}, auth)
    expect(status == 422 and "does not fit" in rej.get("error", ""),
           f"a tower trained on another teacher is rejected: {rej.get('error', '')[-110:]}")
    status, rej = request("POST", "/admin/swap", {"run": str(work.path / "b"), "components": ["tower.nosuch"]}, auth)
    expect(status == 422 and "unknown component 'tower.nosuch'" in rej.get("error", ""), "an unknown component is rejected")
    status, pc2 = request("POST", "/v1/predict", {"task": "fashion", "inputs": images})
    expect(status == 200 and pc2 == pc, "the mix keeps serving after the rejected swaps")
    status, wide = request("POST", "/admin/swap", {"run": str(work.path / "wide"), "components": ["teacher.pooled"]}, auth)
    expect(status == 200 and "+teacher.pooled=wide@" in wide["version"], f"swap in a different teacher with its tower: {wide.get('version')}")
    status, pw = request("POST", "/v1/predict", {"task": "fashion", "inputs": images})
    expect(status == 200 and pw["version"] == wide["version"] and len(pw["predictions"]) == 8, "served by the new teacher")
    request("POST", "/admin/swap", {"run": str(work.path / "a")}, auth)

    # SIGHUP re-reads the watched folder (a symlink to run b) and swaps it in.
    server.proc.send_signal(signal.SIGHUP)
    for _ in range(200):
        status, ready = request("GET", "/readyz")
        if ready["version"].startswith("b@"):
            break
        time.sleep(0.05)
    expect(ready["version"] == swapped["version"], f"SIGHUP swapped in the watched run: {ready['version']}")
    status, metrics = request("GET", "/metrics")
    expect(status == 200 and 'nexus_requests_total{endpoint="predict",code="400"}' in metrics
           and "nexus_swaps_total 6" in metrics and "nexus_swaps_rejected_total 4" in metrics
           and 'nexus_tower_routed_total{tower="pixels"}' in metrics
           and 'nexus_teacher_rows_total{teacher="pooled"}' in metrics and "nexus_teacher_rows_saved_total 0" in metrics and "nexus_request_seconds_bucket" in metrics,
           "metrics: requests by code, latency histogram, routing counts, swaps")
finally:
    rc = server.stop()
    work.remove()

expect(rc == 0, f"clean shutdown on SIGTERM (exit {rc})")
checks.finish()
