"""Paging through steps in headless Chromium at a routing shape (Agents-A1's topology, 4 layers x 32 experts).

Each click waits for the new step's heading and its routing chart to be drawn and the app to settle, never
for a fixed time. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from horizonlens.bench.browser import CHROMIUM, chromium, serving
from horizonlens.bench.shape_app import wait_routing_drawn, wait_step_drawn
from tests.support.corpora import REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.model]
SHOTS = REPO / "test-artifacts" / "screenshots"


def test_next_and_prev_page_through_steps(shape_corpus) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (make test installs Debian's chromium)")
    pytest.importorskip("playwright.sync_api")
    corpus, checkpoint, ids = shape_corpus
    tid = ids[0]
    SHOTS.mkdir(parents=True, exist_ok=True)
    with serving(corpus, checkpoint) as app, chromium(CHROMIUM) as browser:
        url = app.url
        page = browser.new_page(viewport={"width": 1500, "height": 2400})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/trajectory?trajectory={tid}&step=1")
        wait_step_drawn(page, 1)
        for step in (2, 3, 4):
            page.get_by_role("button", name="Next").first.click()
            wait_step_drawn(page, step)
            assert page.get_by_role("heading", name=f"Step {step - 1} ·").count() == 0  # the old step is gone
            assert f"step={step}" in page.url  # the URL follows, so the view can be shared
        page.get_by_role("button", name="Prev").first.click()
        wait_step_drawn(page, 3)
        page.screenshot(path=str(SHOTS / "routing-shape-trajectory.png"))
        page.get_by_role("link", name="Routing").first.click()
        wait_routing_drawn(page)
        assert page.get_by_text("4 MoE layers (0–3) · 32 experts", exact=False).count() == 1
        page.screenshot(path=str(SHOTS / "routing-shape-routing.png"))
        assert not errors, errors


def test_shape_app_timings_run_end_to_end(shape_corpus) -> None:
    """The browser timings of `bench --shape` (bench/shape_app.py) on the small shape, beside itself as baseline."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (make test installs Debian's chromium)")
    pytest.importorskip("playwright.sync_api")
    from horizonlens.bench.shape_app import AppTarget, measure_apps, report_lines, with_ratios

    corpus, checkpoint, ids = shape_corpus
    target = AppTarget(corpus, checkpoint, ids[0], start_step=1)
    warmed = AppTarget(corpus, checkpoint, ids[0], start_step=1, warmup=ids[1])  # another run opened first
    timed = measure_apps({"sample": target, "small": warmed}, nexts=2, repeats=1, executable=CHROMIUM)
    for per in timed.values():
        assert per["next_step_s"]["runs"] == 2 and per["routing_page_s"]["runs"] == 1
        assert per["next_step_s"]["median"] > 0 and per["open_trajectory_s"]["server_cpu_median"] > 0
        assert per["floor_s"]["runs"] == 1  # the floor, timed in the same run
        assert per["open_vs_floor"] == per["open_trajectory_s"]["median"] / per["floor_s"]["median"]
    base = timed.pop("sample")
    lines = report_lines({"trajectory": ids[0], "tokens": 1, "baseline": base, "shapes": with_ratios(timed, base)})
    assert lines[-2].startswith("| sample 4 x 16 (baseline) | ") and lines[-1].startswith("| small | ")
    assert "×)" in lines[-1].split("|")[3] and lines[-1].endswith(f"× ({base['floor_s']['median']:.2f} s) |")
