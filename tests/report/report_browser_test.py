"""`nexus profile` and `nexus report` end to end, the report checked in a real headless Chromium.

1. `nexus train tests/cli/train_demo.yaml` (300 steps, two inline TorchScript teachers), then
   `nexus add-teacher` of tests/increments/teachers/lowrank_teacher.yaml (a lowrank tower with
   `rank: auto`): a run with curves, an eval.json and a proof.json.
2. `nexus profile RUN --json`: per teacher and dataset, 1 <= rank_90 <= rank_95 <= rank_99 <= width, the
   explained-variance shares non-increasing and summing to at most 1; each CKA matrix symmetric, with a
   unit diagonal and values in [0, 1]; the added tower's measured rank (run.json's data_sized) is the
   one the profile suggests.
3. `nexus report RUN --out report.html`: exit 0 and no http(s) reference in the file; a missing run and
   no arguments at all are bad usage (exit 2).
4. The report in Chromium (driven over the DevTools protocol on --remote-debugging-pipe): no uncaught
   exception, no console error or assertion, no browser log error, no request other than file: or data:
   (a report must open offline, years later); every required chart exists, plots data points and has
   coloured pixels on its canvas (drawn with data, not just axes); the CKA tables are n x n; the proof
   section lists every component of proof.json. A full-page screenshot is written for a human to look at.

Usage: report_browser_test.py NEXUS_BINARY TESTS_DIR [--keep DIR]
       report_browser_test.py --html REPORT.html [--keep DIR]   (step 4 alone, on an existing report)
Debian's /usr/bin/python3 and /usr/bin/chromium; standard library only.
"""
import argparse
import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
WINDOW = (1280, 900)
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-extensions", "--disable-breakpad", "--mute-audio", "--hide-scrollbars",
                  "--remote-debugging-pipe", f"--window-size={WINDOW[0]},{WINDOW[1]}"]
CHROMIUM_SECONDS = 60  # everything Chromium does, from start to screenshot
RENDER_SECONDS = 30  # loading the report and drawing its charts
REQUIRED_CHARTS = ["curves-loss", "curves-val", "curves-lr", "retention-bars", "retention-ratio"]
REQUIRED_PREFIXES = ["routing-", "spectrum-"]
# A plot drawn with data, not only its axes, grid and labels (all grey): coloured pixels on at least this
# share of the canvas, or, for a chart of few points (one validation, say), this many per data point.
MIN_COLOURED_SHARE = 0.005
MIN_COLOURED_PER_POINT = 10

# Per [data-chart] box: its id, data-points and the share of its canvas's pixels that are painted and
# clearly coloured (channel spread > 48: axes, grid lines and labels are grey, data is not).
CHART_STATS_JS = """
Array.from(document.querySelectorAll('[data-chart]')).map((box) => {
  const canvas = box.querySelector('canvas');
  const {width, height} = canvas;
  const px = canvas.getContext('2d').getImageData(0, 0, width, height).data;
  let coloured = 0;
  for (let i = 0; i < px.length; i += 4) {
    const spread = Math.max(px[i], px[i + 1], px[i + 2]) - Math.min(px[i], px[i + 1], px[i + 2]);
    if (px[i + 3] > 0 && spread > 48) coloured += 1;
  }
  return {id: box.dataset.chart, points: Number(box.dataset.points), width, height, coloured};
})
"""

PAGE_FACTS_JS = """
({
  charts: Number(document.body.dataset.charts),
  errors: Array.from(document.querySelectorAll('.section-error')).map((e) => e.textContent.slice(0, 300)),
  cka: Array.from(document.querySelectorAll('table[data-cka]')).map((t) =>
    ({dataset: t.dataset.cka, n: Number(t.dataset.n), cells: t.querySelectorAll('tbody td').length})),
  components: Array.from(document.querySelectorAll('#proofs [data-component]')).map((r) => r.dataset.component),
})
"""


class Checks:
    """Prints `ok: ...` / `FAIL: ...` per check and remembers the failures."""

    def __init__(self):
        self.failures = []

    def expect(self, ok, what):
        print(("ok: " if ok else "FAIL: ") + what, flush=True)
        if not ok:
            self.failures.append(what)
        return ok


class DevTools:
    """Chromium with the DevTools protocol on a pipe: commands in on its fd 3, NUL-terminated JSON replies
    and events out on its fd 4. Events are kept in `events` for the checks. No read waits past
    CHROMIUM_SECONDS from the start."""

    def __init__(self, profile_dir, log_path):
        to_chromium, self._to = os.pipe()
        self._from, from_chromium = os.pipe()
        # Its profile, caches and crash-report database all in profile_dir, none in the user's home.
        env = dict(os.environ, XDG_CONFIG_HOME=str(profile_dir / "config"), XDG_CACHE_HOME=str(profile_dir / "cache"))
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                            close_fds=False, start_new_session=True,
                                            preexec_fn=_devtools_fds(to_chromium, from_chromium))
        os.close(to_chromium)
        os.close(from_chromium)
        self._buffer, self._next_id, self.events = b"", 0, []
        self._give_up = time.monotonic() + CHROMIUM_SECONDS

    def call(self, method, params=None, session=None, timeout=15):
        """Sends one command and returns its result; events read meanwhile go to `events`."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") != self._next_id:
                self.events.append(reply)
            elif "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            else:
                return reply.get("result", {})

    def wait_event(self, method, timeout):
        """Reads messages until an event `method` has arrived (maybe already); False on timeout."""
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            try:
                self.events.append(self._read(deadline))
            except TimeoutError:
                return False
        return True

    def drain(self, seconds):
        """Collects the events that arrive within `seconds` (late console messages and requests)."""
        deadline = time.monotonic() + seconds
        with contextlib.suppress(TimeoutError):
            while True:
                self.events.append(self._read(deadline))

    def _read(self, deadline):
        while b"\0" not in self._buffer:
            remaining = min(deadline, self._give_up) - time.monotonic()
            if remaining <= 0 or not select.select([self._from], [], [], remaining)[0]:
                raise TimeoutError("no reply from Chromium in time")
            chunk = os.read(self._from, 1 << 20)
            if not chunk:
                raise ConnectionError(f"Chromium closed the DevTools pipe (exit {self.process.poll()})")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)

    def close(self):
        """Asks Chromium to quit (so that it reaps its own helpers); failing that within 10 s, kills its
        process group (it leads its own session). Then closes the pipe."""
        self._give_up = time.monotonic() + 5
        try:
            self.call("Browser.close", timeout=5)
            self.process.wait(timeout=10)
        except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        os.close(self._to)
        os.close(self._from)


def _devtools_fds(child_reads, child_writes):
    """A preexec_fn putting the pipe ends on the child's fds 3 and 4, where --remote-debugging-pipe wants
    them (first moved above 10 so that neither dup2 overwrites the other's source)."""
    def wire():
        high_in = fcntl.fcntl(child_reads, fcntl.F_DUPFD_CLOEXEC, 10)
        high_out = fcntl.fcntl(child_writes, fcntl.F_DUPFD_CLOEXEC, 10)
        os.dup2(high_in, 3)
        os.dup2(high_out, 4)
    return wire


def evaluate(browser, session, expression, timeout=15):
    """Value of a JavaScript expression in the page (JSON-serialisable), awaiting a promise."""
    result = browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                          session, timeout)
    if "exceptionDetails" in result:
        raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}: {expression[:80]}")
    return result["result"].get("value")


def open_report(browser, html):
    """A new page attached in flat mode with Runtime, Log, Page and Network on, navigated to the report;
    returns the session once the page has loaded and signalled body[data-rendered]."""
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Runtime", "Log", "Page", "Network"):
        browser.call(f"{domain}.enable", session=session)
    browser.call("Page.navigate", {"url": html.resolve().as_uri()}, session)
    if not browser.wait_event("Page.loadEventFired", RENDER_SECONDS):
        raise TimeoutError(f"the report did not load in {RENDER_SECONDS} s")
    deadline = time.monotonic() + RENDER_SECONDS
    while evaluate(browser, session, "document.body && document.body.dataset.rendered") != "true":
        if time.monotonic() > deadline:
            raise TimeoutError(f"body[data-rendered] not 'true' after {RENDER_SECONDS} s")
        time.sleep(0.2)
    return session


def page_problems(events):
    """Uncaught exceptions, console errors and assertions, browser log errors and network requests."""
    problems = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            description = details.get("exception", {}).get("description") or details.get("text")
            problems.append(f"uncaught exception: {description}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            problems.append(f"console.{params['type']}: {text[:500]}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            problems.append(f"browser log error: {entry.get('text', '')[:500]} ({entry.get('url', '')})")
        elif method == "Network.requestWillBeSent" and not params["request"]["url"].startswith(("file:", "data:")):
            problems.append(f"network request: {params['request']['url'][:200]}")
    return problems


def check_charts(checks, stats, facts):
    ids = [s["id"] for s in stats]
    missing = [c for c in REQUIRED_CHARTS if c not in ids]
    missing += [p + "*" for p in REQUIRED_PREFIXES if not any(i.startswith(p) for i in ids)]
    checks.expect(not missing, f"report charts: {ids} (missing: {missing or 'none'})")
    minimum = len(REQUIRED_CHARTS) + len(REQUIRED_PREFIXES)
    checks.expect(facts["charts"] >= minimum and facts["charts"] == len(stats),
                  f"body[data-charts] = {facts['charts']}: >= {minimum} and one per [data-chart] box ({len(stats)})")
    for s in stats:
        area = s["width"] * s["height"]
        wanted = min(MIN_COLOURED_SHARE * area, MIN_COLOURED_PER_POINT * s["points"])
        checks.expect(s["points"] > 0 and s["coloured"] >= wanted,
                      f"chart {s['id']}: {s['points']} data points, {s['coloured']} pixels "
                      f"({100 * s['coloured'] / max(1, area):.2f} %) of its {s['width']}x{s['height']} canvas in "
                      f"data colours (>= {wanted:.0f})")


def check_sections(checks, facts, proof):
    checks.expect(not facts["errors"], f"no section reports a drawing error {facts['errors'] or ''}")
    checks.expect(bool(facts["cka"]), f"CKA tables: {[t['dataset'] for t in facts['cka']]}")
    for t in facts["cka"]:
        checks.expect(t["n"] >= 1 and t["cells"] == t["n"] ** 2,
                      f"CKA table {t['dataset']}: {t['cells']} cells for {t['n']} teachers (n x n)")
    if proof is not None:
        names = [c["name"] for c in proof["components"]]
        checks.expect(facts["components"] == names,
                      f"proof section lists the {len(names)} components of proof.json in order: {facts['components']}")


def screenshot(browser, session, path):
    """Full-page PNG: the viewport stretched to the content height, after two frames to settle."""
    size = browser.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
    height = int(size["height"]) + 1
    browser.call("Emulation.setDeviceMetricsOverride",
                 {"width": WINDOW[0], "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
    evaluate(browser, session, "new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    png = base64.b64decode(browser.call("Page.captureScreenshot", {"format": "png"}, session, timeout=30)["data"])
    path.write_bytes(png)
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    return width, height, len(png)


def check_in_chromium(checks, html, keep, scratch, proof=None):
    """Step 4: opens html, checks the page; the screenshot goes to keep (or scratch)."""
    log = scratch / "chromium.log"
    browser = DevTools(scratch / "chromium-profile", log)
    try:
        session = open_report(browser, html)
        stats = evaluate(browser, session, CHART_STATS_JS)
        facts = evaluate(browser, session, PAGE_FACTS_JS)
        png = (keep or scratch) / "report.png"
        width, height, size = screenshot(browser, session, png)
        browser.drain(0.5)
        problems = page_problems(browser.events)
    except (OSError, RuntimeError, TimeoutError) as error:
        seen = "".join(f"\n  {p}" for p in page_problems(browser.events))
        checks.expect(False, f"Chromium on {html}: {error}{seen}\nChromium's log ends:\n"
                             f"{log.read_text(errors='replace')[-1500:]}")
        return
    finally:
        browser.close()
    checks.expect(not problems, "Chromium: no exception, console error, log error or non-file request" +
                  "".join(f"\n  {p}" for p in problems))
    check_charts(checks, stats, facts)
    check_sections(checks, facts, proof)
    print(f"screenshot: {png} ({width}x{height} px, {size} bytes)")


# ---- steps 1-3: the nexus commands ----------------------------------------------------------------------

class Nexus:
    """Runs the nexus binary with no developer plugin path, on the test run's feature cache (ctest's, shared
    with the other end-to-end tests that train train_demo.yaml) or else a scratch one."""

    def __init__(self, binary, scratch):
        self.binary = binary
        self.env = dict(os.environ)
        self.env.setdefault("NEXUS_CACHE_DIR", str(scratch / "cache"))
        self.env.pop("NEXUS_PLUGIN_PATH", None)

    def __call__(self, *args, timeout=300):
        return subprocess.run([self.binary, *map(str, args)], env=self.env, capture_output=True, text=True,
                              timeout=timeout)


def expect_exit(checks, result, want, what):
    ok = checks.expect(result.returncode == want, f"{what}: exit {result.returncode} (expected {want})")
    if not ok:
        print(result.stdout[-2000:], result.stderr[-2000:], sep="\n")
    return ok


def check_profile(checks, profile):
    for t in profile.get("teachers", []):
        ex = t["explained"]
        where = f"profile {t['teacher']} on {t['dataset']}"
        checks.expect(1 <= t["rank_90"] <= t["rank_95"] <= t["rank_99"] <= t["width"],
                      f"{where}: 1 <= rank_90 {t['rank_90']} <= rank_95 {t['rank_95']} <= rank_99 {t['rank_99']} "
                      f"<= width {t['width']}")
        checks.expect(bool(ex) and sum(ex) <= 1 + 1e-6 and all(a >= b - 1e-12 for a, b in zip(ex, ex[1:])),
                      f"{where}: {len(ex)} explained-variance shares, non-increasing, sum {sum(ex):.6f} <= 1")
    checks.expect(bool(profile.get("teachers")), f"profile: {len(profile.get('teachers', []))} teacher entries")
    for m in profile.get("cka", []):
        matrix, n = m["matrix"], len(m["teachers"])
        square = len(matrix) == n and all(len(row) == n for row in matrix)
        cells = [(i, j) for i in range(n) for j in range(n)] if square else []
        ok = square and all(abs(matrix[i][i] - 1) < 1e-4 for i in range(n)) and all(
            abs(matrix[i][j] - matrix[j][i]) < 1e-6 and -1e-6 <= matrix[i][j] <= 1 + 1e-6 for i, j in cells)
        checks.expect(ok, f"CKA on {m['dataset']}: {n}x{n}, symmetric, unit diagonal, values in [0, 1]: {matrix}")
    checks.expect(bool(profile.get("cka")), f"profile: {len(profile.get('cka', []))} CKA matrices")


def check_data_sized(checks, run, profile):
    """The added teacher's `rank: auto` is what `nexus profile` suggests for it, and run.json records it."""
    sized = json.loads((run / "run.json").read_text()).get("data_sized", [])
    half = next((t for t in profile.get("towers", []) if t["teacher"] == "half"), None)
    want = [f"teachers.2.tower.options.rank={half['suggested_rank']}"] if half else None
    checks.expect(half is not None and sized == want and half["tower"] == "lowrank",
                  f"add-teacher sized the new lowrank tower from the data: run.json data_sized {sized} == {want}")


def make_report(checks, nexus, tests, work):
    """Steps 1-3: a run with an added teacher, its profile and its report; the report's path, or None."""
    r = nexus("train", tests / "cli" / "train_demo.yaml", "--run", work / "base", "--json")
    if not expect_exit(checks, r, 0, "nexus train tests/cli/train_demo.yaml"):
        return None
    r = nexus("add-teacher", work / "base", "--teacher", tests / "increments" / "teachers" / "lowrank_teacher.yaml",
              "--out", work / "added", "--steps", "100", "--json")
    if not expect_exit(checks, r, 0, "nexus add-teacher RUN --teacher lowrank_teacher.yaml"):
        return None
    checks.expect((work / "added" / "proof.json").is_file(), "add-teacher wrote proof.json")
    expect_exit(checks, nexus("report", "/nonexistent", "--out", work / "x.html"), 2, "nexus report /nonexistent")
    expect_exit(checks, nexus("report"), 2, "nexus report with no arguments")
    r = nexus("profile", work / "added", "--json")
    if expect_exit(checks, r, 0, "nexus profile RUN --json"):
        profile = json.loads(r.stdout)
        check_profile(checks, profile)
        check_data_sized(checks, work / "added", profile)
    html = work / "report.html"
    if not expect_exit(checks, nexus("report", work / "added", "--out", html), 0, "nexus report RUN --out report.html"):
        return None
    text = html.read_text(errors="replace") if html.is_file() else ""
    remote = [ref for ref in ('src="http', "src='http", 'href="http', "href='http", "url(http") if ref in text]
    checks.expect(bool(text) and not remote, f"report.html written ({len(text)} bytes), no remote references {remote}")
    return html if text else None


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("nexus", nargs="?", help="the nexus binary")
    parser.add_argument("tests", nargs="?", type=Path, help="the source tests/ folder")
    parser.add_argument("--html", type=Path, help="only check this existing report in Chromium")
    parser.add_argument("--keep", type=Path, help="write report.png (and keep the report) here")
    args = parser.parse_args()
    if not args.html and not (args.nexus and args.tests):
        parser.error("give NEXUS_BINARY TESTS_DIR, or --html REPORT")
    return args


def main():
    args = parse_args()
    checks = Checks()
    work = Path(tempfile.mkdtemp(prefix="nexus-report-test-"))
    try:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
        html, proof = args.html, None
        if html is None:
            html = make_report(checks, Nexus(args.nexus, work), args.tests, work)
            proof = json.loads((work / "added" / "proof.json").read_text()) if html else None
            if html and args.keep:
                shutil.copy(html, args.keep / "report.html")
        if html is not None:
            check_in_chromium(checks, html, args.keep, work, proof)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{len(checks.failures)} failure(s)" if checks.failures else "all checks passed")
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
