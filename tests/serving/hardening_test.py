"""`nexus serve` against hostile clients, over real sockets on loopback (docs/security.md):
deeply nested JSON, compressed and chunked bodies far past --max-body, slow clients holding
connections, a full worker queue, requests to unknown paths with bodies, wrong types anywhere in
a body, and the admin token. Each check here failed on the server before it was hardened.

Usage: hardening_test.py NEXUS_BINARY SOURCE_TESTS_DIR
"""
import json
import random
import select
import socket
import sys
import threading
import time
import zlib
from pathlib import Path

from serving_lib import Checks, Server, Workdir

nexus, tests = sys.argv[1], Path(sys.argv[2])
checks, work = Checks("serve_hardening"), Workdir(nexus)
expect = checks.expect
MAX_BODY = 1 << 20

work.run("train", str(tests / "cli" / "serve_demo.yaml"), "--run", str(work.path / "a"), "--no-eval", "--set", "trainer.steps=30")
(work.path / "token").write_text("  correct horse battery staple \n")


def start(*extra):
    return Server(work, work.path / "a", "--max-body", str(MAX_BODY), "--admin-token-file", str(work.path / "token"), *extra)


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def raw_exchange(port, head, body_chunks=(), timeout=60):
    """Sends a request head and body pieces on a raw socket; returns the status line (or the error)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(head)
        for chunk in body_chunks:
            s.sendall(chunk)
        return s.recv(4096).split(b"\r\n", 1)[0].decode()
    except OSError as e:
        try:
            return s.recv(4096).split(b"\r\n", 1)[0].decode() or type(e).__name__
        except OSError:
            return type(e).__name__
    finally:
        s.close()


image = [random.Random(0).randrange(256) for _ in range(784)]
good = json.dumps({"task": "fashion", "inputs": [image]}).encode()
srv = start()
server, port = srv.proc, srv.port
try:
    # 1. ~200 KB of nesting: the old image walk recursed once per level and crashed the process.
    deep = b'{"task": "fashion", "inputs": [' + b"[" * 100000 + b"]" * 100000 + b"]}"
    status, body = srv.request("POST", "/v1/predict", deep)
    expect(status == 400 and "nested more than 32" in body.get("error", "") and server.poll() is None,
           f"100,000 levels of nesting: {status} {str(body)[:80]}, server alive")

    # 2. Wrong types and out-of-range numbers anywhere: 400 before any forward (the old server
    #    answered 500 for a non-boolean "routing", read after the forward).
    cases = [
        ({"task": "fashion", "inputs": [image], "routing": "yes"}, "'routing' must be true or false"),
        ({"task": "fashion", "inputs": [image], "rooting": True}, "unknown field 'rooting'"),
        ({"task": "fashion", "inputs": [[1e300] * 784]}, "between 0 and 255"),
        ({"task": "fashion", "inputs": [[-1] + image[1:]]}, "between 0 and 255"),
        ({"task": "fashion", "inputs": [[True] * 784]}, "array of numbers"),
        ({"task": "fashion", "inputs": [image + [0]]}, "must have 784 values"),
    ]
    for doc, message in cases:
        status, body = srv.request("POST", "/v1/predict", json.dumps(doc).encode())
        expect(status == 400 and message in body.get("error", ""), f"{message}: {status} {str(body)[:100]}")
    status, body = srv.request("POST", "/v1/predict", b'{"task": "fashion", "inputs": [[1e400]]}')
    expect(status == 400 and "malformed JSON" in body.get("error", ""), f"a number beyond double (1e400): {status}")
    status, body = srv.request("POST", "/v1/predict", good, {"Content-Type": "multipart/form-data; boundary=x"})
    expect(status == 415 and "application/json" in body.get("error", ""), f"a multipart body: {status}")
    line = raw_exchange(port, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x")
    expect(line.startswith("HTTP/1.1 400"), f"two Content-Length headers: '{line}'")
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"QUERY /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-B: 2\r\n\r\n")
    answers = b""
    while chunk := s.recv(4096):
        answers += chunk
    s.close()
    expect(answers.count(b"HTTP/1.1 400") == 1, f"an unknown method is answered once and the connection closed: "
                                                 f"{answers.count(b'HTTP/1.1')} answer(s)")
    status, body = srv.request("POST", "/v1/embed", json.dumps({"task": "fashion", "inputs": [image], "routing": True}).encode())
    expect(status == 400 and "unknown field 'routing'" in body.get("error", ""), f"embed takes no 'routing': {status}")

    # 3. Compressed bombs and chunked floods are limited on the bytes the server would hold.
    before = rss_mb(server.pid)
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    zeros = bytes(1 << 20)
    gz = b"".join(bomb.compress(zeros) for _ in range(1024)) + bomb.flush()  # 1 GiB of zeros, ~1 MB
    status, body = srv.request("POST", "/v1/predict", gz, {"Content-Encoding": "gzip", "Content-Type": "application/json"})
    expect(status == 413 and "once decoded" in body.get("error", ""), f"a 1 GiB gzip body ({len(gz)} bytes sent): {status}")
    status, body = srv.request("POST", "/v1/predict", good, {"Content-Encoding": "compress"})
    expect(status == 415, f"an unknown Content-Encoding: {status}")

    sent = [0]

    def chunks(total=1_500_000_000, piece=1 << 20):
        block = b"%x\r\n" % piece + b" " * piece + b"\r\n"
        while sent[0] < total:
            sent[0] += piece
            yield block
        yield b"0\r\n\r\n"

    head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
    line = raw_exchange(port, head, chunks())
    grown = rss_mb(server.pid) - before
    expect(line.startswith("HTTP/1.1 413") or line in ("ConnectionResetError", "BrokenPipeError"),
           f"a 1.5 GB chunked body: '{line}' after {sent[0] >> 20} MiB sent")
    expect(grown < 600, f"RSS grew by {grown:.0f} MB during both bodies (limit 600)")
    status, _ = srv.request("POST", "/v1/predict", good)
    expect(status == 200 and server.poll() is None, f"still serving after both: {status}")

    # 4. A body sent to an unknown path is not read at all; a POST without a length is refused.
    line = raw_exchange(port, b"POST /nowhere HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", [b"1000\r\n" + b"x" * 4096])
    expect(line.startswith("HTTP/1.1 404"), f"POST to an unknown path: '{line}'")
    line = raw_exchange(port, b"GET /v1/predict HTTP/1.1\r\nHost: x\r\n\r\n")
    expect(line.startswith("HTTP/1.1 405"), f"GET on a POST endpoint: '{line}'")
    line = raw_exchange(port, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n\r\n")
    expect(line.startswith("HTTP/1.1 411"), f"POST without Content-Length: '{line}'")

    # 5. Slow clients: 16 connections each sending a header line every 3 s. /healthz must answer
    #    within 1 s meanwhile, and each slow client is cut off at the header deadline.
    stop = threading.Event()
    cut = []

    def slowloris(i):
        s = socket.create_connection(("127.0.0.1", port))
        t0 = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        while not stop.is_set():
            readable, _, _ = select.select([s], [], [], 3)
            try:
                if readable and s.recv(1) == b"":  # the server hung up on us
                    cut.append(time.monotonic() - t0)
                    break
                s.sendall(b"X-Slow-%d: x\r\n" % i)
            except OSError:
                cut.append(time.monotonic() - t0)
                break
        s.close()

    slow = [threading.Thread(target=slowloris, args=(i,), daemon=True) for i in range(16)]
    for t in slow:
        t.start()
    time.sleep(1)
    waits = []
    for _ in range(5):
        t0 = time.monotonic()
        status, _ = srv.request("GET", "/healthz", timeout=30)
        waits.append(time.monotonic() - t0)
        time.sleep(0.5)
    expect(max(waits) < 1.0, f"/healthz beside 16 slow clients: slowest of 5 answers {max(waits):.3f} s")
    time.sleep(12)  # past the 10 s header deadline
    stop.set()
    for t in slow:
        t.join()
    expect(len(cut) == 16, f"the slow clients were cut off at the header deadline: {len(cut)} of 16, after "
                           f"{min(cut, default=0):.0f}-{max(cut, default=0):.0f} s")

    # 6. Headers beyond --max-header-bytes end the connection instead of growing the server.
    huge = b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"y" * 4000) for i in range(40)) + b"\r\n"
    line = raw_exchange(port, huge)
    expect(not line.startswith("HTTP/1.1 200"), f"160 KB of headers: '{line}' (no answer, connection closed)")

    # 7. The admin token is the whole trimmed file, compared in full.
    swap = json.dumps({"run": str(work.path / "a")}).encode()
    status, _ = srv.request("POST", "/admin/swap", swap, {"Authorization": "Bearer correct"})
    expect(status == 401, f"the token's first word alone is refused: {status}")
    status, body = srv.request("POST", "/admin/swap", swap, {"Authorization": "Bearer correct horse battery staple"})
    expect(status == 200, f"the whole token is accepted: {status} {str(body)[:80]}")

    # 8. Prometheus text: every sample line parses (label values escaped).
    status, text = srv.request("GET", "/metrics")
    def parses(line):
        try:
            float(line.rsplit(" ", 1)[1])
            return line.count('"') % 2 == 0
        except (ValueError, IndexError):
            return False
    bad_lines = [l for l in text.splitlines() if l and not l.startswith("#") and not parses(l)]
    expect(status == 200 and not bad_lines and "nexus_http_connections_rejected_total" in text, f"/metrics parses: {bad_lines[:2]}")
finally:
    rc = srv.stop(timeout=30)
expect(rc == 0, f"SIGTERM stops the server cleanly: exit {rc}")

# 9. A full queue is answered 503 at once, without waiting on anyone.
srv = start("--threads", "2", "--max-queue", "1", "--header-timeout", "5")
server, port = srv.proc, srv.port
try:
    idle = []
    for _ in range(3):  # 2 workers + 1 queued, one at a time so that each worker has taken its own
        idle.append(socket.create_connection(("127.0.0.1", port)))
        idle[-1].sendall(b"GET /healthz HTTP/1.1\r\n")  # never finished
        time.sleep(0.3)
    t0 = time.monotonic()
    line = raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
    expect(line.startswith("HTTP/1.1 503") and time.monotonic() - t0 < 1, f"a connection beyond the queue: '{line}'")
    for s in idle:
        s.close()
    time.sleep(6)
    status, _ = srv.request("GET", "/healthz")
    expect(status == 200, f"answering again once the slow ones are gone: {status}")
    status, text = srv.request("GET", "/metrics")
    expect("nexus_http_connections_rejected_total 1" in text, "the rejection is counted")
finally:
    srv.stop(timeout=30)

work.remove()
checks.finish()
