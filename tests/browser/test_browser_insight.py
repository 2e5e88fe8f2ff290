"""The Failure modes, Tools and Routing pages in headless Chromium: charts drawn, links that open the step they
name, the replayed-set disclosure, and untrusted text that stays text.

Every wait is for content the action must produce, then for Streamlit to settle; screenshots go to
test-artifacts/screenshots/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from horizonlens.bench.browser import serving, step_heading
from horizonlens.metrics import modes as mmodes
from horizonlens.query.store import open_store
from tests.support.browser import assert_no_planted_markup, planted_requests, settled, shot
from tests.support.corpora import BARE_URLS, REPO, SAMPLE_CORPUS, TOOL_IMAGE

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def chart(page, title: str):  # noqa: ANN001, ANN201 - a Playwright locator
    """A Plotly chart's title (drawn in the SVG once the figure is on screen)."""
    return page.locator(".gtitle", has_text=title).first


def select_first_row(page, key: str) -> None:  # noqa: ANN001
    """Tick the first row of a selectable table (its row marker, drawn in the data grid's canvas)."""
    grid = page.locator(f".st-key-{key} [data-testid=stDataFrame]").first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 14, box["y"] + 35 + 17)


def test_insight_pages_draw_and_open_the_steps_they_name(browser, tmp_path: Path) -> None:
    corpus = Path(shutil.copytree(SAMPLE_CORPUS, tmp_path / "corpus"))
    result = mmodes.find_modes(open_store(corpus))  # kept in the corpus: the page reads it back
    first = result.examples[result.examples["mode"] == result.modes["mode"].iloc[0]].iloc[0]
    with serving(corpus, REPO / "sample_data" / "checkpoint") as app:
        page = browser.new_page(viewport={"width": 1440, "height": 2400})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        page.goto(f"{app.url}/failure_modes")
        settled(page, page.locator("[data-testid=stDataFrame] canvas").first)  # the modes' table
        assert page.locator(".js-plotly-plot").count() == 0  # the first paint draws no chart, only the table
        assert page.get_by_text(f"{result.note['failed_steps']:,} failed steps", exact=False).first.is_visible()
        shot(page, "insight-01-failure-modes")
        page.get_by_role("tab", name="Where they occur").click()  # a lazy tab: runs once opened
        settled(page, chart(page, "Where along the horizon each mode happens"))
        assert chart(page, "Where each mode occurs").is_visible()
        shot(page, "insight-01b-where-modes-occur")
        page.get_by_role("tab", name="Examples").click()
        settled(page, page.locator(".st-key-modes_examples").first)
        select_first_row(page, "modes_examples")  # the first mode's most typical step
        page.wait_for_url("**/trajectory?**", timeout=120_000)
        settled(page, step_heading(page, int(first["step"])))
        assert f"step={int(first['step'])}" in page.url and str(first["trajectory_id"]) in page.url
        shot(page, "insight-02-mode-example-opened")

        page.goto(f"{app.url}/tools")
        settled(page, chart(page, "Along the horizon"))
        for title in ("Per tool: share of its calls", "Tool use by agent"):
            assert chart(page, title).is_visible()
        assert page.get_by_text("runs with loops", exact=True).first.is_visible()
        shot(page, "insight-03-tools")

        page.goto(f"{app.url}/routing")
        settled(page, chart(page, "Expert load per step"))
        page.get_by_role("tab", name="Replayed corpus").click()
        settled(page, chart(page, "Around checks"))
        for title in ("All layers: each layer's experts by load", "Expert load by domain", "Expert load by teacher"):
            assert chart(page, title).is_visible()
        # the bundled replays are a recorded stratified sample: said so beside every corpus-level chart
        assert page.get_by_text("Runs used: 60 runs of the stratified random sample", exact=False).first.is_visible()
        shot(page, "insight-04-routing-corpus")
        page.get_by_role("tab", name="Probe, map and health").click()
        settled(page, chart(page, "Replayed steps by routing signature"))
        for title in ("Does routing predict teacher", "Routing health per layer"):
            assert chart(page, title).is_visible()
        assert page.get_by_text("Routes by teacher: yes", exact=False).first.is_visible()
        shot(page, "insight-05-routing-probe")
        assert not errors, errors
        page.close()


def test_insight_pages_keep_untrusted_text_inert(browser, hostile_corpus: Path, tiny_checkpoint: Path) -> None:
    """Hostile agent, teacher, tool names, check details and labels: shown as typed, never markup."""
    from horizonlens.model.batch import ensure_replayed
    from horizonlens.model.loader import load_checkpoint

    store = open_store(hostile_corpus)
    loaded = load_checkpoint(tiny_checkpoint)
    for tid in ("evil-t0", "plain-t0"):
        ensure_replayed(store, loaded, tid)
    store.close()
    with serving(hostile_corpus, tiny_checkpoint) as app:
        page = browser.new_page(viewport={"width": 1440, "height": 2400})
        planted = planted_requests(page)
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        page.goto(f"{app.url}/failure_modes")
        settled(page, page.locator("[data-testid=stDataFrame] canvas").first)  # the modes' table
        assert_no_planted_markup(page)
        shot(page, "insight-06-hostile-failure-modes")
        page.get_by_role("tab", name="Where they occur").click()  # the modes' labels on two more charts' axes
        settled(page, chart(page, "Where along the horizon each mode happens"))
        assert_no_planted_markup(page)

        page.goto(f"{app.url}/tools")
        settled(page, chart(page, "Along the horizon"))
        assert page.locator(".xtick text", has_text=TOOL_IMAGE[:20]).count() >= 1  # the tool's name, as typed
        assert_no_planted_markup(page)
        shot(page, "insight-07-hostile-tools")

        page.goto(f"{app.url}/routing")
        settled(page, chart(page, "Expert load per step"))
        page.get_by_role("tab", name="Replayed corpus").click()
        settled(page, chart(page, "Expert load by teacher"))
        assert page.locator(".ytick text", has_text=BARE_URLS[:30]).count() >= 1  # the teacher, as typed
        assert_no_planted_markup(page)
        page.get_by_role("tab", name="Probe, map and health").click()
        settled(page, chart(page, "Replayed steps by routing signature"))
        assert page.get_by_text("A probe needs at least", exact=False).first.is_visible()  # two runs: too few
        assert_no_planted_markup(page)
        shot(page, "insight-08-hostile-routing-probe")
        assert not planted, planted
        assert not dialogs, dialogs
        page.close()
