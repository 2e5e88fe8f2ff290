"""The app served for a test or a benchmark, and its timings in headless Chromium.

`serving()` is the one way code here starts the app: `horizonlens serve` on a free port, ready when its health
check answers, stopped with SIGTERM when the block ends (and killed, with an error, if it does not stop).
Timings wait for rendered content and for Streamlit to finish the run, never for a fixed time.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READY = ("() => { const a = document.querySelector('[data-testid=stApp]'); return a && "
         "a.getAttribute('data-test-script-state') === 'notRunning' && "
         "!document.querySelector('[data-testid=stSkeleton]'); }")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
STOP_TIMEOUT_S = 30.0  # a server that has not stopped this long after SIGTERM is killed and reported


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a server started by a benchmark or test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """A running app: its URL and process; `stopped_after_s` is set once SIGTERM has stopped it."""

    url: str
    process: subprocess.Popen[bytes]
    stopped_after_s: float | None = None


@contextmanager
def serving(corpus: Path, checkpoint: Path | None = None, env: Mapping[str, str] | None = None,
            start_timeout_s: float = 180.0) -> Iterator[Served]:
    """`horizonlens serve` for the duration of the block; always stopped when the block ends.

    The server is the `serve` process itself (it execs Streamlit), so SIGTERM reaches it. Its output goes to
    a temporary file and is quoted if it fails to start or to stop.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "horizonlens.cli", "serve", "--corpus", str(corpus), "--port", str(port)]
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


def measure_app(corpus: Path, checkpoint: Path, repeats: int = 5,
                chromium: str = "/usr/bin/chromium") -> dict[str, Any]:
    """Time the app in headless Chromium: first page ready, and the next step of a trajectory with a cached replay."""
    from playwright.sync_api import sync_playwright

    from horizonlens.corpus.store import open_store
    from horizonlens.model.cache import list_checkpoints

    store = open_store(corpus)
    ckpt = list_checkpoints(corpus)[0]
    tid = store.query("SELECT r.trajectory_id FROM replay_steps r WHERE checkpoint_id = ? GROUP BY 1 "
                      "ORDER BY count(*) DESC LIMIT 1", [ckpt]).column(0)[0].as_py()
    store.close()
    first, nexts = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            with serving(corpus, checkpoint) as app:  # stopped while the pages are still connected
                for _ in range(repeats):
                    page = browser.new_page(viewport={"width": 1440, "height": 1200})
                    t = time.perf_counter()
                    page.goto(app.url)
                    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
                    wait_ready(page)
                    first.append(time.perf_counter() - t)
                    page.goto(f"{app.url}/trajectory?trajectory={tid}&step=3")
                    step_heading(page, 3).wait_for(timeout=120_000)
                    wait_ready(page)
                    for step in (4, 5, 6):
                        t = time.perf_counter()
                        page.get_by_role("button", name="Next ▶").click()
                        step_heading(page, step).wait_for(timeout=60_000)
                        wait_ready(page, 60_000)
                        nexts.append(time.perf_counter() - t)
        finally:
            browser.close()
    return {"trajectory": tid, "first_page_ready_s": {"median": statistics.median(first), "max": max(first)},
            "next_step_cached_replay_s": {"median": statistics.median(nexts), "max": max(nexts)},
            "stop_after_sigterm_s": app.stopped_after_s}
