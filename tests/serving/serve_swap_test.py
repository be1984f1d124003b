"""Hot swaps under load: `nexus serve` keeps answering while runs are swapped in and out.

Two client threads (bench's nexus-serve-load) drive the server on loopback; first 5 s without
swaps, then 30 s during which 100 swaps alternate between runs a and b. Every response names the
version that served it, and the load tool checks that its predictions are exactly those version's
(reference answers taken from each run before the load): a response mixing parts of a and b would
match neither. Passes with 0 failed requests, 0 mixed responses, 100 swaps done; prints p99
latency with and without swaps.

Usage: serve_swap_test.py NEXUS_BINARY LOAD_TOOL SOURCE_TESTS_DIR [SECONDS_WITH_SWAPS]
"""
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

nexus, load_tool, tests = sys.argv[1], sys.argv[2], Path(sys.argv[3])
with_swaps = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0
QUIET = 5.0
SWAPS = 100
work = Path(tempfile.mkdtemp())
env = dict(os.environ, NEXUS_CACHE_DIR=str(work / "cache"))
env.pop("NEXUS_PLUGIN_PATH", None)
failures = []


def expect(ok, what):
    print(("ok: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures.append(what)


demo = str(tests / "cli" / "serve_demo.yaml")
for name, seed in (("a", 7), ("b", 8)):
    subprocess.run([nexus, "train", demo, "--run", str(work / name), "--no-eval", "--set", "trainer.steps=100",
                    "--set", f"trainer.seed={seed}"], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
(work / "token").write_text("s3cret\n")
server = subprocess.Popen([nexus, "serve", str(work / "a"), "--port", "0", "--admin-token-file", str(work / "token")],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
try:
    port = int(server.stdout.readline().rsplit(":", 1)[1])

    def request(path, body, auth=False):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("POST", path, json.dumps(body), {"Authorization": "Bearer s3cret"} if auth else {})
        r = c.getresponse()
        out = r.status, json.loads(r.read())
        c.close()
        return out

    # 16 request bodies of 1 to 4 images each, so that micro-batches mix different requests.
    rng = random.Random(0)
    bodies = [{"task": "fashion", "inputs": [[rng.randrange(256) for _ in range(784)] for _ in range(1 + i % 4)]}
              for i in range(16)]
    (work / "bodies.jsonl").write_text("".join(json.dumps(b) + "\n" for b in bodies))
    reference, versions = {}, []
    for run in ("b", "a"):
        status, swapped = request("/admin/swap", {"run": str(work / run)}, auth=True)
        answers = [request("/v1/predict", b)[1] for b in bodies]
        versions.append(swapped["version"])
        reference[swapped["version"]] = [a["predictions"] for a in answers]
        expect(status == 200 and all(a["version"] == swapped["version"] for a in answers), f"reference answers of {swapped['version']}")
    (work / "reference.json").write_text(json.dumps(reference))

    def load(seconds):
        out = subprocess.run([load_tool, "--port", str(port), "--bodies", str(work / "bodies.jsonl"), "--threads", "2",
                              "--duration", str(seconds), "--reference", str(work / "reference.json"), "--json"],
                             capture_output=True, text=True)
        try:
            return json.loads(out.stdout)
        except ValueError:
            sys.exit(f"the load tool failed (exit {out.returncode}): {out.stderr}")

    quiet = load(QUIET)
    expect(quiet["failed"] == 0 and quiet["mismatched"] == 0 and quiet["ok"] > 100,
           f"{QUIET:.0f} s without swaps: {quiet['ok']} requests ok, {quiet['failed']} failed, {quiet['mismatched']} mixed")

    swap_results, swap_seconds = [], []

    def swapper():
        time.sleep(2)  # let the load start first
        gap = (with_swaps - 6) / SWAPS
        for i in range(SWAPS):
            start = time.perf_counter()
            status, body = request("/admin/swap", {"run": str(work / ("b" if i % 2 == 0 else "a"))}, auth=True)
            swap_seconds.append(time.perf_counter() - start)
            swap_results.append((status, body.get("version")))
            time.sleep(max(0.0, gap - swap_seconds[-1]))

    t = threading.Thread(target=swapper)
    t.start()
    busy = load(with_swaps)
    t.join()
    done = sum(1 for s, v in swap_results if s == 200 and v in reference)
    expect(done == SWAPS, f"{done} of {SWAPS} swaps done, alternating (median {sorted(swap_seconds)[len(swap_seconds) // 2]:.3f} s each)")
    expect(busy["failed"] == 0 and busy["mismatched"] == 0 and busy["unknown_version"] == 0 and busy["ok"] > 100,
           f"{with_swaps:.0f} s with swaps, 2 client threads: {busy['ok']} requests ok, {busy['failed']} failed, "
           f"{busy['mismatched']} mixed, {busy['unknown_version']} of an unknown version; errors {busy['errors']}")
    served = busy["by_version"]
    expect(len(served) == 2 and min(served.values()) > 10, f"both runs served during the swaps: {served}")
    print(f"p99 latency: {quiet['latency_ms']['p99']:.2f} ms without swaps ({quiet['throughput_rps']:.0f} req/s), "
          f"{busy['latency_ms']['p99']:.2f} ms during swaps ({busy['throughput_rps']:.0f} req/s); "
          f"p50 {quiet['latency_ms']['p50']:.2f} / {busy['latency_ms']['p50']:.2f} ms")
    expect(server.poll() is None, "the server is still up")
finally:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
    shutil.rmtree(work, ignore_errors=True)

print(f"serve_swap: {len(failures)} failed")
sys.exit(1 if failures else 0)
