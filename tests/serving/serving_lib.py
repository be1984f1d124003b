"""What the serving tests share: the pass/fail tally, a scratch folder with its own feature cache,
and a `nexus serve` on an ephemeral loopback port with a plain JSON client."""
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


class Checks:
    def __init__(self, name):
        self.name, self.failures = name, []

    def expect(self, ok, what):
        print(("ok: " if ok else "FAIL: ") + what, flush=True)
        if not ok:
            self.failures.append(what)

    def finish(self):
        print(f"{self.name}: {len(self.failures)} failed")
        sys.exit(1 if self.failures else 0)


class Workdir:
    """A temporary folder whose feature cache is private and whose plugins are the built-in ones."""

    def __init__(self, nexus):
        self.nexus, self.path = nexus, Path(tempfile.mkdtemp())
        self.env = dict(os.environ, NEXUS_CACHE_DIR=str(self.path / "cache"))
        self.env.pop("NEXUS_PLUGIN_PATH", None)

    def run(self, *args):
        subprocess.run([self.nexus, *args], env=self.env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


class Server:
    """`nexus serve RUN --port 0 ...`: the port is read from the first line it prints."""

    def __init__(self, work, run, *extra):
        self.proc = subprocess.Popen([work.nexus, "serve", str(run), "--port", "0", *extra], env=work.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.first_line = self.proc.stdout.readline()
        self.port = int(self.first_line.rsplit(":", 1)[1])

    def request(self, method, path, body=None, headers=None, timeout=60):
        """(status, parsed JSON or text); a dict or list body is sent as JSON."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            headers = dict(headers or {}, **{"Content-Type": "application/json"})
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        payload = r.read()
        c.close()
        try:
            return r.status, json.loads(payload)
        except ValueError:
            return r.status, payload.decode(errors="replace")

    def metric(self, name_and_labels):
        """The value of one sample of GET /metrics, 0 when it is absent."""
        _, text = self.request("GET", "/metrics")
        for line in text.splitlines():
            if line.startswith(name_and_labels + " "):
                return float(line.split()[-1])
        return 0.0

    def stop(self, timeout=10):
        """SIGTERM; the exit code, or "hung" if it had to be killed after `timeout` seconds."""
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "hung"
