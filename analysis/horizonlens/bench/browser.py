"""The app served for a test or a benchmark, and its timings in headless Chromium.

`serving()` is the one way code here starts the app: `horizonlens serve` on a free port, ready when its health
check answers, stopped with SIGTERM when the block ends (and killed, with an error, if it does not stop).
Timings wait for rendered content and for Streamlit to finish the run, never for a fixed time.

`timed_load` times a page from navigation to a settled page. A page is *settled* when Streamlit's script (or
fragment) run is over, no element is a loading skeleton or marked stale, and the page's own content is on
screen (its figures, its table, its step). `timed_interaction` times from a click to the end of the rerun it
starts: a MutationObserver in the page records when the app starts and stops running, so a fast rerun is
never missed and a slow one never cut short. `bench.pages` times every page this way, beside the floor.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READY = ("() => { const a = document.querySelector('[data-testid=stApp]'); return a && "
         "a.getAttribute('data-test-script-state') === 'notRunning' && "
         "!document.querySelector('[data-testid=stSkeleton]'); }")
SETTLED = ("() => { const a = document.querySelector('[data-testid=stApp]'); return !!a && "
           "a.getAttribute('data-test-script-state') === 'notRunning' && "
           "!document.querySelector('[data-testid=stSkeleton]') && !document.querySelector('[data-stale=true]'); }")
# Records when the next run starts and ends (fragment reruns included).
WATCH = """() => {
  const app = document.querySelector('[data-testid=stApp]');
  window.__hlRun = {started: false, ended: false};
  if (window.__hlObserver) window.__hlObserver.disconnect();
  // A fast run can start and end before the callback runs: the records' old values still show it started.
  window.__hlObserver = new MutationObserver((records) => {
    const state = app.getAttribute('data-test-script-state');
    if (state === 'running' || records.some(r => r.oldValue === 'running')) window.__hlRun.started = true;
    if (window.__hlRun.started && state !== 'running') window.__hlRun.ended = true;
  });
  window.__hlObserver.observe(app, {attributes: true, attributeOldValue: true,
                                    attributeFilter: ['data-test-script-state']});
}"""
RUN_OVER = f"() => window.__hlRun && window.__hlRun.ended && ({SETTLED})()"
CHROMIUM = os.environ.get("HORIZONLENS_CHROMIUM", "/usr/bin/chromium")  # Debian's package: never a downloaded one
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
VIEWPORT: Any = {"width": 1440, "height": 1200}
STOP_TIMEOUT_S = 30.0  # a server that has not stopped this long after SIGTERM is killed and reported


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a server started by a benchmark or test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def chromium(executable: str = CHROMIUM) -> Iterator[Any]:
    """Headless Chromium driven by Playwright for the duration of the block; always closed when it ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Served:
    """A running app: its URL and process; `stopped_after_s` is set once SIGTERM has stopped it."""

    url: str
    process: subprocess.Popen[bytes]
    stopped_after_s: float | None = None


@contextmanager
def serving(corpus: Path, checkpoint: Path | None = None, env: Mapping[str, str] | None = None,
            start_timeout_s: float = 180.0, args: Sequence[str] = ()) -> Iterator[Served]:
    """`horizonlens serve` for the duration of the block; always stopped when the block ends.

    The server is the `serve` process itself (it execs Streamlit), so SIGTERM reaches it. Its output goes to
    a temporary file and is quoted if it fails to start or to stop. `args`: more `serve` options (`--auth FILE`,
    another `--corpus`, `--watch DIR` …).
    """
    port = free_port()
    cmd = [sys.executable, "-m", "horizonlens.cli", "serve", "--corpus", str(corpus), "--port", str(port), *args]
    if checkpoint:
        cmd += ["--checkpoint", str(checkpoint)]
    full_env = dict(os.environ, HORIZONLENS_CHECKPOINT=str(checkpoint) if checkpoint else "", **(env or {}))
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        served = Served(url=f"http://127.0.0.1:{port}", process=proc)
        try:
            _wait_healthy(served, start_timeout_s, log)
            yield served
        finally:
            served.stopped_after_s = _stop(proc, log)


def _tail(log: Any) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-3000:]


def _wait_healthy(served: Served, timeout_s: float, log: Any) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(f"the server exited with {served.process.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{served.url}/_stcore/health", timeout=2) as resp:
                if resp.read().decode().strip() == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.25)  # polling interval of the health check, not a wait for the app
    raise RuntimeError(f"no health answer from {served.url} within {timeout_s:.0f} s:\n{_tail(log)}")


def _stop(proc: subprocess.Popen[bytes], log: Any) -> float | None:
    """SIGTERM, then wait; kill and raise if it does not stop. Seconds it took to stop (None if it had exited)."""
    if proc.poll() is not None:
        return None
    started = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the server did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM; killed it:\n"
                           f"{_tail(log)}") from None
    return time.perf_counter() - started


def wait_ready(page: Any, timeout_ms: int = 120_000) -> None:
    """Wait until Streamlit has finished running the script and no placeholder is left.

    Call it only after waiting for content the action must produce: right after a click the previous run may
    still look finished.
    """
    page.wait_for_function(READY, timeout=timeout_ms)


def step_heading(page: Any, step: int) -> Any:
    """The Trajectory page's heading of one step ("Step 4 · agent · …"): appears once that step has rendered."""
    return page.get_by_role("heading", name=re.compile(rf"^Step {step}\b")).first


def settle(page: Any, timeout_ms: int = 180_000) -> None:
    """Wait until the app is not running and nothing on the page is a skeleton or stale."""
    page.wait_for_function(SETTLED, timeout=timeout_ms)


def timed_load(page: Any, url: str, ready: Callable[[Any], None]) -> float:
    """Seconds from navigation until the page has settled with its own content on screen."""
    started = time.perf_counter()
    page.goto(url)
    ready(page)
    settle(page)
    return time.perf_counter() - started


def timed_interaction(page: Any, action: Callable[[], None], then: Callable[[Any], None] | None = None,
                      timeout_ms: int = 180_000, effect: str | None = None) -> float:
    """Seconds from `action` (a click) to the end of the rerun it starts (and `then`, a content check).

    `effect`: a JavaScript predicate that is true once the action has taken effect. A fragment rerun of a few
    milliseconds can start and end within one render, so the app's run state never changes and no run is seen;
    the interaction then ends when its effect is on a settled page.
    """
    page.evaluate(WATCH)
    started = time.perf_counter()
    action()
    over = RUN_OVER if effect is None else f"() => ({RUN_OVER})() || (({effect})() && ({SETTLED})())"
    page.wait_for_function(over, timeout=timeout_ms, polling=10)
    if then:
        then(page)
    return time.perf_counter() - started
