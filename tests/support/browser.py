"""Headless Chromium for the browser tests: the launcher, waits for settled pages, screenshots and timings."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from horizonlens.bench.browser import CHROMIUM, chromium, wait_ready
from tests.support.corpora import PLANTED_HOST, REPO

ARTIFACTS = REPO / "test-artifacts"
SHOTS = ARTIFACTS / "screenshots"
TIMINGS: dict[str, float] = {}


def settled(page, content, timeout_ms: int = 120_000) -> None:
    """Wait for content the last action must produce, then for Streamlit to finish that run (never a fixed time)."""
    content.wait_for(timeout=timeout_ms)
    wait_ready(page, timeout_ms)


def heading(page, name: str):  # noqa: ANN202 - a Playwright locator
    return page.get_by_role("heading", name=name, exact=True).first


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def planted_requests(page) -> list[str]:  # noqa: ANN001
    """Every request the page makes to the planted host, from now on (a hostile text became markup)."""
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if PLANTED_HOST in r.url else None)
    return seen


def assert_no_planted_markup(page) -> None:  # noqa: ANN001
    """No image or link to the planted host, no javascript: link, and the planted script never ran."""
    assert page.locator(f"img[src*='{PLANTED_HOST}']").count() == 0
    assert page.locator(f"a[href*='{PLANTED_HOST}']").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.evaluate("() => window.__pwned") is None


def timed(name: str, page, action, content) -> None:  # noqa: ANN001
    start = time.perf_counter()
    action()
    settled(page, content)
    TIMINGS[name] = round(time.perf_counter() - start, 3)


def launch_browser():  # noqa: ANN201 - a generator of Playwright browsers
    """Debian's headless Chromium driven by Playwright (never a downloaded browser); writes the timings after."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (make test installs Debian's chromium)")
    pytest.importorskip("playwright.sync_api")
    with chromium(CHROMIUM) as b:
        yield b
    SHOTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "browser-timings.json").write_text(json.dumps(TIMINGS, indent=2))
    print(f"\nscreenshots: {SHOTS}\ntimings: {TIMINGS}")
