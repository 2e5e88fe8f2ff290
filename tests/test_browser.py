"""Real-browser tests: the app started as a subprocess, driven in headless Chromium (Debian's package).

Screenshots of each page go to test-artifacts/screenshots/ (printed at the end); page timings go to
test-artifacts/browser-timings.json.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from horizonlens.bench.browser import CHROMIUM_ARGS, READY, free_port
from tests.conftest import HOSTILE, REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = os.environ.get("HORIZONLENS_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
SHOTS = ARTIFACTS / "screenshots"
TIMINGS: dict[str, float] = {}


@contextmanager
def _serve(corpus: Path, checkpoint: Path | None) -> Iterator[str]:
    """The app served on a free port for the duration of the block; its URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "horizonlens.cli", "serve", "--corpus", str(corpus), "--port", str(port)]
    if checkpoint:
        cmd += ["--checkpoint", str(checkpoint)]
    env = dict(os.environ, HORIZONLENS_CHECKPOINT=str(checkpoint) if checkpoint else "")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stdout.read() if proc.stdout else ''}") from None
            time.sleep(0.5)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (make test installs Debian's chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
    SHOTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "browser-timings.json").write_text(json.dumps(TIMINGS, indent=2))
    print(f"\nscreenshots: {SHOTS}\ntimings: {TIMINGS}")


def _wait(page, timeout_ms: int = 120_000) -> None:
    page.wait_for_timeout(200)
    page.wait_for_function(READY, timeout=timeout_ms)


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _timed(name: str, page, action) -> None:  # noqa: ANN001
    start = time.perf_counter()
    action()
    _wait(page)
    TIMINGS[name] = round(time.perf_counter() - start, 3)


def test_walkthrough(browser, tiny_corpus: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    with _serve(corpus, tiny_checkpoint) as url:
        page = browser.new_page(viewport={"width": 1440, "height": 1600})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        _timed("explore_first_render_s", page, lambda: page.goto(url))
        assert page.get_by_text("Trajectories", exact=True).first.is_visible()
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        _shot(page, "01-explore")

        # open a trajectory by selecting the first row of the table (the row marker of the data grid)
        grid = page.locator("[data-testid=stDataFrame]").first
        grid.scroll_into_view_if_needed()
        box = grid.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + 14, box["y"] + 35 + 17)
        page.wait_for_url("**/trajectory**", timeout=60_000)
        _wait(page)
        assert page.get_by_role("heading", name="Trajectory").is_visible()
        step_text = page.get_by_role("heading", name="Step", exact=False).first.inner_text()
        _shot(page, "02-trajectory")

        _timed("next_step_without_replay_s", page, lambda: page.get_by_role("button", name="Next ▶").click())
        # the rerun may start after _wait saw the old page settled: wait for the new step, not a fixed time
        expect(page.get_by_role("heading", name="Step", exact=False).first).not_to_have_text(step_text, timeout=60_000)

        _timed("replay_one_trajectory_s", page,
               lambda: page.get_by_role("button", name="▶ Replay this trajectory").click())
        page.get_by_text("Experts chosen in step", exact=False).first.wait_for(timeout=120_000)
        assert page.get_by_text("Surprisal (nats)", exact=True).first.is_visible()
        _shot(page, "03-trajectory-replayed")

        _timed("next_step_cached_replay_s", page, lambda: page.get_by_role("button", name="Next ▶").click())
        page.get_by_text("Experts chosen in step", exact=False).first.wait_for(timeout=60_000)

        _timed("routing_page_s", page, lambda: page.get_by_role("link", name="Routing").click())
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        _shot(page, "04-routing")

        _timed("compounding_page_s", page, lambda: page.get_by_role("link", name="Compounding").click())
        page.get_by_text("Survival to the first failed check", exact=False).first.wait_for(timeout=60_000)
        _shot(page, "05-compounding")

        for name in ("Compare", "SQL"):
            _timed(f"{name.lower()}_page_s", page, lambda n=name: page.get_by_role("link", name=n).click())
            _shot(page, f"06-{name.lower()}")
        assert not errors, errors
        page.close()


def test_html_injection_never_executes(browser, hostile_corpus: Path) -> None:
    with _serve(hostile_corpus, None) as url:
        page = browser.new_page(viewport={"width": 1440, "height": 1400})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{url}/trajectory?trajectory=evil-t0&step=1")
        _wait(page)
        page.get_by_text("Step 1", exact=False).first.wait_for(timeout=60_000)
        body = page.locator("body").inner_text()
        assert "<script>window.__pwned = 1</script>" in body  # shown literally
        assert page.evaluate("() => window.__pwned") is None
        assert page.locator("img[src=x]").count() == 0
        assert page.locator("img[src*='pwn.png']").count() == 0  # markdown in an agent name is not rendered
        assert page.locator("a[href^='javascript']").count() == 0
        page.wait_for_timeout(500)
        assert not dialogs
        assert HOSTILE.split("'")[0] in body
        _shot(page, "07-hostile")
        page.goto(f"{url}/?")
        _wait(page)
        page.get_by_label("Search task and step content (case-insensitive)").fill("<script>")
        page.keyboard.press("Enter")
        _wait(page)
        assert page.evaluate("() => window.__pwned") is None
        page.close()


def test_upload_import(browser, tiny_corpus: Path, tmp_path: Path) -> None:
    from tests.test_import import TAU

    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    src = tmp_path / "tau-run.json"
    src.write_text(json.dumps([TAU]))
    with _serve(corpus, None) as url:
        page = browser.new_page(viewport={"width": 1440, "height": 1200})
        page.goto(f"{url}/import")
        _wait(page)
        page.locator("input[type=file]").set_input_files(str(src))
        page.get_by_text("tau-run.json").first.wait_for(timeout=30_000)
        page.get_by_role("button", name="Import", exact=True).click()
        page.get_by_text("1 trajectories added", exact=False).first.wait_for(timeout=60_000)
        _shot(page, "08-import")
        page.goto(url)
        _wait(page)
        page.get_by_text("49", exact=True).first.wait_for(timeout=30_000)  # 48 sample + 1 imported
        page.close()


def test_upload_hostile_files(browser, tiny_corpus: Path, tmp_path: Path) -> None:
    """Hostile uploads end as listed problems (never a traceback); a target outside the allowed places is refused."""
    from tests.hostile.cases import HEADER, sample, tau
    from tests.hostile.zipkit import Member, write_zip

    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    files = [write_zip(tmp_path / "packed.eval", [Member("header.json", HEADER, 9), Member("samples/a.json",
                                                                                           sample(1), 93),
                                                  Member("samples/b.json", sample(2), flags=1)]),
             tmp_path / "garbage-first.jsonl", tmp_path / "huge-number.json"]
    files[1].write_text("%%% <script>alert(1)</script>\n" + json.dumps(tau(1)) + "\n")
    files[2].write_text("[" + json.dumps(tau(2)) + ', {"task_id": 3, "reward": ' + "9" * 5000 + "}]")
    with _serve(corpus, None) as url:
        page = browser.new_page(viewport={"width": 1440, "height": 1400})
        page.goto(f"{url}/import")
        _wait(page)
        page.locator("input[type=file]").set_input_files([str(f) for f in files])
        page.get_by_text("huge-number.json").first.wait_for(timeout=30_000)
        page.get_by_role("button", name="Import", exact=True).click()
        page.get_by_text("3 trajectories added", exact=False).first.wait_for(timeout=60_000)
        body = page.inner_text("body")
        assert "encrypted" in body and "line 1: not JSON" in body and "4,300 digits" in body
        assert "Traceback" not in body and not page.evaluate("window.__pwned === 1")
        _shot(page, "09-import-hostile")
        page.locator("input[aria-label='Into corpus']").fill("/etc/horizonlens-pwned")
        page.locator("input[aria-label='Into corpus']").press("Enter")
        _wait(page)
        page.get_by_role("button", name="Import", exact=True).click()
        page.get_by_text("imports only into", exact=False).first.wait_for(timeout=30_000)
        assert not Path("/etc/horizonlens-pwned").exists()
        _shot(page, "10-import-refused-target")
        page.close()
