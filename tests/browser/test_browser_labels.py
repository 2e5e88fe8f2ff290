"""In Chromium: a label added on the Trajectory page survives a restart of the app, filters Explore and is exported."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from horizonlens.bench.browser import serving, wait_ready
from horizonlens.query import open_store
from tests.support.browser import shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]
LABEL = "needs <b>review</b> — loop"


def test_a_label_survives_a_restart_filters_explore_and_is_exported(browser, tiny_corpus: Path,  # noqa: F811
                                                                     tmp_path: Path) -> None:
    from playwright.sync_api import expect

    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    tid = open_store(corpus).list_trajectories(sort="trajectory_id", limit=1).rows["trajectory_id"][0].as_py()
    with serving(corpus) as app:
        url = app.url
        page = browser.new_page(viewport={"width": 1440, "height": 2400})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/trajectory?trajectory={tid}&step=2")
        wait_ready(page)
        page.get_by_text("No label on this run or on step 2", exact=False).first.wait_for(timeout=60_000)
        page.get_by_role("textbox", name="Label").fill(LABEL)
        category = page.locator(".st-key-labels_add_category input")
        category.click()
        category.fill("browser check")  # a category nobody used before
        page.keyboard.press("Enter")
        page.get_by_role("button", name="Add label").click()
        page.get_by_text("Label added to step 2", exact=False).first.wait_for(timeout=60_000)
        wait_ready(page)
        shot(page, "09-label-added")
        assert not errors, errors
        page.close()

    with serving(corpus) as app:  # a new server process: the label comes from the corpus on disk
        url = app.url
        page = browser.new_page(viewport={"width": 1440, "height": 1800})
        page.goto(url)
        wait_ready(page)
        page.locator(".st-key-explore_labels").click()
        page.get_by_role("option", name=LABEL).click()
        page.keyboard.press("Escape")
        wait_ready(page)
        expect(page.get_by_text("1 trajectories", exact=False).first).to_be_visible(timeout=60_000)
        assert page.locator("b", has_text="review").count() == 0  # the label's HTML stays text
        shot(page, "10-explore-has-label")

        page.goto(f"{url}/trajectory?trajectory={tid}&step=2")
        wait_ready(page)
        page.get_by_role("tab", name="Export all labels").click()
        with page.expect_download(timeout=60_000) as download:
            page.locator(".st-key-labels_export_csv button").click()
        path = tmp_path / "labels.csv"
        download.value.save_as(path)
        shot(page, "11-label-export")
        page.close()
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert [(r["trajectory_id"], r["step"], r["label"], r["category"]) for r in rows] == [
        (tid, "2", LABEL, "browser check")]
