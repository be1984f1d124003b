"""Fuzzes a live `nexus serve` with schemathesis against its OpenAPI description (GET /openapi.json,
docs/openapi.json): no 5xx, every status code documented, content types and response bodies as
documented. Three passes: every operation as documented (the admin token sent), the inference
operations with the demo run's real task and well-formed images (so 200 answers are checked too),
and /admin/swap without the token (401). Then the server must still be up and answer /healthz,
stop cleanly on SIGTERM, and a server started without an admin token must answer the swap 403.

Usage: schemathesis_test.py NEXUS_BINARY SOURCE_TESTS_DIR

schemathesis comes from scripts/python-tools.sh (PyPI, pinned), in $NEXUS_PYTHON_TOOLS or else
python-tools/ beside the binary's bin/ folder (the build folder); the script is a no-op when the
venv is already there. $NEXUS_SCHEMATHESIS_EXAMPLES (default 50) caps the test cases per operation
and phase; $NEXUS_SCHEMATHESIS_SEED (default 1) fixes the generation; $NEXUS_KEEP_WORK keeps the
work folder (schemathesis' logs, JSON reports and HAR files of every request, the server's log).
"""
import atexit
import copy
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

nexus, tests = os.path.abspath(sys.argv[1]), Path(sys.argv[2]).resolve()
source = tests.parent
venv = Path(os.environ.get("NEXUS_PYTHON_TOOLS") or Path(nexus).parent.parent / "python-tools")
examples = int(os.environ.get("NEXUS_SCHEMATHESIS_EXAMPLES", "50"))
seed = os.environ.get("NEXUS_SCHEMATHESIS_SEED", "1")
# The checks this test holds the server to (schemathesis' names).
CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance"]
TASK, PIXELS, SIDE = "fashion", 784, 28  # tests/cli/serve_demo.yaml: Fashion-MNIST, 1x28x28 images
TOKEN = "fuzz-token-0123456789"

work = Path(tempfile.mkdtemp())
env = dict(os.environ, NEXUS_CACHE_DIR=str(work / "cache"))
env.pop("NEXUS_PLUGIN_PATH", None)
started = time.monotonic()
failures, passed = [], []


@atexit.register
def cleanup():
    if os.environ.get("NEXUS_KEEP_WORK"):
        print(f"work folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def expect(ok, what):
    print(("ok: " if ok else "FAIL: ") + what, flush=True)
    (passed if ok else failures).append(what)


def stamp(what):
    print(f"[{time.monotonic() - started:6.1f}s] {what}", flush=True)


# schemathesis, pinned, in its own venv.
tools = subprocess.run(["bash", str(source / "scripts" / "python-tools.sh"), str(venv)], capture_output=True, text=True,
                       env=dict(os.environ, PYTHON=os.environ.get("PYTHON", sys.executable)))
if tools.returncode != 0:
    print(f"FAIL: scripts/python-tools.sh {venv} (exit {tools.returncode}):\n{tools.stdout}{tools.stderr}")
    sys.exit(1)
st = venv / "bin" / "st"
stamp(f"{subprocess.run([str(st), '--version'], capture_output=True, text=True).stdout.strip()} in {venv}")

subprocess.run([nexus, "train", str(tests / "cli" / "serve_demo.yaml"), "--run", str(work / "a"), "--no-eval",
                "--set", "trainer.steps=100"], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
stamp("trained run a")
(work / "token").write_text(TOKEN + "\n")
server_log = open(work / "server.log", "w")
server = subprocess.Popen([nexus, "serve", str(work / "a"), "--port", "0", "--admin-token-file", str(work / "token")],
                          env=env, stdout=subprocess.PIPE, stderr=server_log, text=True)


def drain():  # keep the server's stdout from filling its pipe
    for _ in server.stdout:
        pass


def request(method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request(method, path, body=json.dumps(body).encode() if body is not None else None,
              headers={"Content-Type": "application/json", **(headers or {})} if body is not None else (headers or {}))
    r = c.getresponse()
    payload = r.read()
    c.close()
    try:
        return r.status, r.getheader("Content-Type", ""), json.loads(payload)
    except ValueError:
        return r.status, r.getheader("Content-Type", ""), payload.decode(errors="replace")


def schemathesis(name, schema, args):
    """One `st run` of `schema` against the live server: its summary, and a check that it found nothing."""
    path = work / f"{name}.openapi.json"
    path.write_text(json.dumps(schema))
    report, har = work / f"{name}.report.json", work / f"{name}.har"
    cmd = [str(st), "run", str(path), "--url", base, "--checks", ",".join(CHECKS), "--max-examples", str(examples),
           "--seed", seed, "--phases", "examples,coverage,fuzzing", "--workers", "2", "--request-timeout", "30",
           "--suppress-health-check", "all", "--generation-database", "none", "--no-color", "--report", "json,har",
           "--report-json-path", str(report), "--report-har-path", str(har), *args]
    out = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=600)
    (work / f"{name}.log").write_text(out.stdout + out.stderr)
    doc = json.loads(report.read_text()) if report.exists() else None
    sent = len(json.loads(har.read_text())["log"]["entries"]) if har.exists() else 0
    if doc is None:
        expect(False, f"{name}: schemathesis wrote no report (exit {out.returncode}):\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
        return
    ops, cases = doc["operations"] or {}, doc["test_cases"]
    by_check = {}
    for f in doc["failures"]:
        by_check[f["title"]] = by_check.get(f["title"], 0) + f["count"]
    errors = {e["title"]: e["count"] for e in doc["errors"]}
    stamp(f"{name}: {ops.get('tested', 0)} operations, {cases['generated']} test cases, {sent} requests, "
          f"{cases['unique_failures']} unique failures {by_check or ''}{', errors ' + str(errors) if errors else ''}")
    totals["operations"] += ops.get("tested", 0)
    totals["requests"] += sent
    for title, n in by_check.items():
        totals["failures"][title] = totals["failures"].get(title, 0) + n
    ok = out.returncode == 0 and not by_check and not errors
    if not ok:
        print(out.stdout[-20000:] + out.stderr[-5000:])
    expect(ok, f"{name}: schemathesis exit {out.returncode}, failures {by_check}, errors {errors}")


def specialised(doc):
    """`doc` narrowed to what the demo run serves: its task, and images of its 28x28 shape (flat or
    rows), a few per request, so that well-formed requests reach the model and 200s get checked."""
    doc = copy.deepcopy(doc)
    schemas = doc["components"]["schemas"]
    schemas["Task"] = {"type": "string", "enum": [TASK]}
    pixel = {"type": "integer", "minimum": 0, "maximum": 255}
    flat = {"type": "array", "minItems": PIXELS, "maxItems": PIXELS, "items": pixel}
    row = {"type": "array", "minItems": SIDE, "maxItems": SIDE, "items": pixel}
    rows = {"type": "array", "minItems": SIDE, "maxItems": SIDE, "items": row}
    schemas["Inputs"] = {"type": "array", "minItems": 1, "maxItems": 3, "items": {"anyOf": [flat, rows]}}
    return doc


totals = {"operations": 0, "requests": 0, "failures": {}}
try:
    line = server.stdout.readline()
    if not line:
        server.wait(timeout=30)
        raise SystemExit(f"FAIL: the server exited {server.returncode} before listening:\n"
                         + (work / "server.log").read_text()[-3000:])
    threading.Thread(target=drain, daemon=True).start()
    port = int(line.rsplit(":", 1)[1])
    base = f"http://127.0.0.1:{port}"
    stamp(line.strip())

    # schemathesis leaves out the operation that serves the schema, so /openapi.json is checked here.
    documented = json.loads((source / "docs" / "openapi.json").read_text())
    status, ctype, served = request("GET", "/openapi.json")
    if status == 200 and isinstance(served, dict) and served.get("openapi"):
        spec = served
        expect(ctype.startswith("application/json") and served == documented,
               f"GET /openapi.json serves docs/openapi.json as application/json ({ctype})")
    else:
        spec = documented
        print(f"WARNING: GET /openapi.json answered {status} ({ctype}); fuzzing against docs/openapi.json instead")
    paths = set(spec.get("paths", {}))
    expect({"/healthz", "/readyz", "/metrics", "/v1/predict", "/v1/embed", "/admin/swap"} <= paths,
           f"the description documents every endpoint: {sorted(paths)}")

    auth = ["--header", f"Authorization: Bearer {TOKEN}"]
    schemathesis("documented", spec, auth)
    schemathesis("inference", specialised(spec), ["--include-path-regex", "^/v1/"])
    schemathesis("swap-without-token", spec, ["--include-path", "/admin/swap"])

    status, _, answer = request("POST", "/admin/swap", {"run": str(work / "a")})
    expect(status == 401 and isinstance(answer, dict) and answer.get("error"), f"swap without the token: {status}")
    status, _, answer = request("POST", "/admin/swap", {"run": str(work / "a")}, {"Authorization": "Bearer wrong"})
    expect(status == 401 and isinstance(answer, dict) and answer.get("error"), f"swap with a wrong token: {status}")
    status, _, answer = request("POST", "/admin/swap", {"run": str(work / "a")}, {"Authorization": f"Bearer {TOKEN}"})
    expect(status == 200 and isinstance(answer, dict) and answer.get("version", "").startswith("a@"),
           f"swap with the token to the run itself: {status} {answer}")

    expect(server.poll() is None, "the server is still running after the fuzzing")
    status, _, health = request("GET", "/healthz")
    expect(status == 200 and health == {"status": "ok"}, f"/healthz still answers: {status} {health}")
finally:
    if server.poll() is None:
        server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    server_log.close()
    # Internal errors (500s) are logged at error level with their incident number.
    errors = [l for l in (work / "server.log").read_text(errors="replace").splitlines() if l.startswith("[error]")]
    if errors:
        print(f"server log: {len(errors)} errors, e.g.:\n  " + "\n  ".join(e[:300] for e in errors[:10]))
expect(server.returncode == 0, f"clean shutdown on SIGTERM (exit {server.returncode})")

# Without a token configured the admin endpoints are off: 403, as documented.
off = subprocess.Popen([nexus, "serve", str(work / "a"), "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       env={k: v for k, v in env.items() if k != "NEXUS_ADMIN_TOKEN"}, text=True)
try:
    port = int(off.stdout.readline().rsplit(":", 1)[1])
    status, ctype, answer = request("POST", "/admin/swap", {"run": str(work / "a")}, {"Authorization": f"Bearer {TOKEN}"})
    expect(status == 403 and "403" in spec["paths"]["/admin/swap"]["post"]["responses"]
           and ctype.startswith("application/json") and isinstance(answer, dict) and answer.get("error"),
           f"swap on a server without an admin token: {status} {answer}")
finally:
    off.terminate()
    off.wait(timeout=10)

print(f"schemathesis: {totals['operations']} operations tested, {totals['requests']} requests, "
      f"failures by check: {totals['failures'] or 'none'}; {time.monotonic() - started:.0f} s")
print(f"schemathesis: {len(passed)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
