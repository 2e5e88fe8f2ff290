"""In headless Chromium: why a τ-bench run failed (Run details), Explore's figures under a filter, the upload box.

Screenshots go to test-artifacts/screenshots/ (10-run-details*, 11-explore-filtered*).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from horizonlens.bench.browser import serving, step_heading, wait_ready
from horizonlens.ingest import import_paths
from horizonlens.ingest.targets import MAX_UPLOAD_MB
from horizonlens.query import TrajectoryFilter, open_store
from tests.support.browser import settled, shot
from tests.support.corpora import MARKDOWN_IMAGE, PLANTED_HOST, SHARED_DATASETS
from tests.support.tau import wrong_cancellation

pytestmark = [pytest.mark.browser, pytest.mark.slow]
REAL_TAU = SHARED_DATASETS / "tau-bench" / "gpt-4o-airline.json"


def _cells(grid) -> list[str]:  # noqa: ANN001 - a Playwright locator
    """The text of a data grid's cells, row by row (the grid keeps an accessible copy of what it draws)."""
    return grid.locator("[role=gridcell]").all_inner_texts()


def _open_run_details(page) -> None:  # noqa: ANN001
    page.get_by_text("Run details: outcome, expected actions", exact=False).first.click()
    cells = page.locator("[data-testid=stDataFrame]").first.locator("[role=gridcell]")
    cells.first.wait_for(state="attached", timeout=120_000)  # the grid's accessible copy, not drawn itself
    wait_ready(page)


def test_run_details_of_a_failed_tau_bench_run(browser, tmp_path: Path) -> None:
    src = tmp_path / "tau.json"
    src.write_text(json.dumps([wrong_cancellation()]))
    paths = [src, *([REAL_TAU] if REAL_TAU.exists() else [])]
    import_paths(paths, tmp_path / "corpus")
    with serving(tmp_path / "corpus") as app:
        page = browser.new_page(viewport={"width": 1440, "height": 1800})
        planted: list[str] = []
        page.on("request", lambda r: planted.append(r.url) if PLANTED_HOST in r.url else None)
        page.goto(f"{app.url}/trajectory?trajectory=tau-bench:3:0&step=0")
        settled(page, step_heading(page, 0))
        body = page.locator("body").inner_text()
        assert "This run failed, yet none of its 2 checks failed" in body
        assert "r_actions = 0: the database after the run differs" in body
        assert re.search(r"First divergence from the expected actions at step 3: wrong arguments of\s+"
                         r"cancel_reservation: reservation_id: expected \"A\", given \"B\"", body), body[:2000]
        _open_run_details(page)
        cells = _cells(page.locator("[data-testid=stDataFrame]").first)
        row = cells[cells.index("wrong arguments"):][:6]
        assert row == ["wrong arguments", "3", "cancel_reservation", 'reservation_id: expected "A", given "B"',
                       '{"reservation_id": "A"}', '{"reservation_id": "B"}']
        assert "matched" in cells and "get_user" in cells
        page.get_by_role("tab", name="Source metadata").click()
        metadata = page.locator("[data-testid=stCode]", has_text='"r_actions"').first
        metadata.wait_for()
        assert MARKDOWN_IMAGE in metadata.inner_text()  # the hostile note, as typed
        shot(page, "10-run-details")
        page.get_by_role("button", name="Go to step 3").click()
        settled(page, step_heading(page, 3))
        assert page.get_by_role("heading", name=re.compile(r"^Step 3 ")).first.is_visible()
        assert "step=3" in page.url
        assert not planted and page.locator(f"img[src*='{PLANTED_HOST}']").count() == 0

        if REAL_TAU.exists():  # the real run: a booking that differs from the expected one in one argument
            page.goto(f"{app.url}/trajectory?trajectory=tau-bench:0:0")
            settled(page, page.get_by_text("First divergence from the expected actions").first)
            body = page.locator("body").inner_text()
            assert "step 16: wrong arguments of" in body and "nonfree_baggages: expected 0, given 1" in body
            _open_run_details(page)
            cells = _cells(page.locator("[data-testid=stDataFrame]").first)
            assert "wrong arguments" in cells and "book_reservation" in cells
            assert "nonfree_baggages: expected 0, given 1" in cells
            shot(page, "10-run-details-real-tau-bench")
        page.close()


def _choose(page, label: str, option: str) -> None:  # noqa: ANN001
    box = page.get_by_role("combobox", name=label, exact=True).first
    box.scroll_into_view_if_needed()
    box.click()
    page.get_by_role("option", name=option, exact=True).first.click()
    page.keyboard.press("Escape")


def _metric(page, label: str) -> tuple[str, str]:  # noqa: ANN001
    """(value, what is beside it) of a headline figure."""
    card = page.locator("[data-testid=stMetric]", has_text=label).first
    delta = card.locator("[data-testid=stMetricDelta]")
    return (card.locator("[data-testid=stMetricValue]").inner_text().strip(),
            delta.inner_text().strip() if delta.count() else "")


def test_explore_figures_follow_the_filters(browser, tiny_corpus: Path) -> None:
    store = open_store(tiny_corpus)
    # the domain with the most failed runs: the selection is its failures
    domain = store.scalar("SELECT domain FROM trajectories WHERE outcome = 'failure' GROUP BY domain "
                          "ORDER BY count(*) DESC, domain LIMIT 1")
    n = store.list_trajectories(TrajectoryFilter(domains=[domain], outcomes=["failure"])).total
    assert n > 0
    with serving(tiny_corpus) as app:
        page = browser.new_page(viewport={"width": 1440, "height": 1800})
        page.goto(app.url)
        settled(page, page.locator(".js-plotly-plot").first)
        assert _metric(page, "Trajectories") == ("48", "")
        _choose(page, "Domain", domain)
        page.get_by_text("corpus: 48").first.wait_for(timeout=120_000)
        _choose(page, "Outcome", "failure")
        page.get_by_text(f"{n} of 48 trajectories that match the filters").first.wait_for(timeout=120_000)
        wait_ready(page)
        assert _metric(page, "Trajectories") == (f"{n}", "corpus: 48")
        assert _metric(page, "Success rate")[0] == "0%"
        titles = page.locator(".js-plotly-plot .gtitle").all_text_contents()  # SVG text has no innerText
        assert any(t.startswith("Outcome and failed checks by domain") and f"{n} of 48" in t for t in titles), titles
        assert any(t.startswith("Horizon length") and f"{n} of 48" in t for t in titles), titles
        shot(page, "11-explore-filtered")

        _choose(page, "Sort by", "cost_usd")
        page.get_by_text("Sorted by cost_usd").first.wait_for(timeout=120_000)
        page.locator("[data-testid=stDataFrame] [role=columnheader]", has_text="cost_usd ↓").first.wait_for(
            state="attached", timeout=120_000)
        wait_ready(page)
        headers = page.locator("[data-testid=stDataFrame] [role=columnheader]").all_inner_texts()
        names = [h.strip() for h in headers if h.strip()]
        assert names[:2] == ["trajectory_id", "cost_usd ↓"], names
        shot(page, "11-explore-sorted")

        # one upload limit: the box the browser draws says the Import page's own
        page.goto(f"{app.url}/import")
        settled(page, page.get_by_text(f"{MAX_UPLOAD_MB} MB per import", exact=False).first)
        box = page.locator("[data-testid=stFileUploaderDropzone]").first.inner_text()
        assert f"{MAX_UPLOAD_MB}MB per file" in box, box
        page.close()
