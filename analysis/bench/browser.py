"""App timings in headless Chromium: first page ready, and the next step with a cached replay."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

READY = ("() => { const a = document.querySelector('[data-testid=stApp]'); return a && "
         "a.getAttribute('data-test-script-state') === 'notRunning' && "
         "!document.querySelector('[data-testid=stSkeleton]'); }")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a server started by a benchmark or test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "horizonlens.cli", "serve", "--corpus", str(corpus),
                             "--checkpoint", str(checkpoint), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, HORIZONLENS_CHECKPOINT=str(checkpoint)))
    try:
        for _ in range(120):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        url = f"http://127.0.0.1:{port}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            first, nexts = [], []
            for _ in range(repeats):
                page = browser.new_page(viewport={"width": 1440, "height": 1200})
                t = time.perf_counter()
                page.goto(url)
                page.wait_for_timeout(100)
                page.wait_for_function(READY, timeout=120_000)
                page.wait_for_selector(".js-plotly-plot", timeout=60_000)
                first.append(time.perf_counter() - t)
                page.goto(f"{url}/trajectory?trajectory={tid}&step=3")
                page.wait_for_function(READY, timeout=120_000)
                page.get_by_text("Experts chosen in step", exact=False).first.wait_for(timeout=60_000)
                for _ in range(3):
                    t = time.perf_counter()
                    page.get_by_role("button", name="Next ▶").click()
                    page.wait_for_timeout(50)
                    page.wait_for_function(READY, timeout=60_000)
                    nexts.append(time.perf_counter() - t)
                page.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return {"trajectory": tid, "first_page_ready_s": {"median": statistics.median(first), "max": max(first)},
            "next_step_cached_replay_s": {"median": statistics.median(nexts), "max": max(nexts)}}
