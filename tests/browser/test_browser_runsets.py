"""Run sets in Chromium: the Compare page's Run sets tab, a flipped task opened at its divergence, and imports
that tag runs with their agent instead of colliding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from horizonlens.bench.browser import serving, wait_ready
from tests.support.browser import settled, shot
from tests.support.corpora import TAU
from tests.support.runsets import paired_corpus

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_run_sets_tab_and_a_flipped_pair(browser, tmp_path: Path) -> None:
    corpus = paired_corpus(tmp_path / "c")
    with serving(corpus) as app:
        page = browser.new_page(viewport={"width": 1440, "height": 2200})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{app.url}/compare?cmp_tab=Run+sets")
        settled(page, page.get_by_text("Successes/trials of each run set per task", exact=False).first)
        assert page.locator(".js-plotly-plot").count() == 0  # the first look: statistics and the task grid
        body = page.inner_text("body")
        assert "64 common" in body and "flipped" in body and "Traceback" not in body
        shot(page, "runsets-01-tab")
        page.get_by_role("tab", name="Along the horizon and survival").click()  # a lazy tab: drawn once opened
        page.locator(".js-plotly-plot").nth(1).wait_for(timeout=60_000)  # B − A along the horizon, survival
        settled(page, page.get_by_text("Kaplan–Meier", exact=False).first)
        shot(page, "runsets-01b-horizon-and-survival")
        page.get_by_role("tab", name="Tasks").click()
        settled(page, page.get_by_text("Successes/trials of each run set per task", exact=False).first)

        grid = page.locator(".st-key-rs_grid [data-testid=stDataFrame]").first
        grid.scroll_into_view_if_needed()
        box = grid.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + 14, box["y"] + 35 + 17)  # the first flipped task's row marker
        settled(page, page.get_by_text("The actions first diverge at step", exact=False).first)
        assert page.get_by_role("tab", name="Two trajectories", selected=True).is_visible()
        assert "Run" not in page.url  # the default tab is left out of the URL
        shot(page, "runsets-02-pair-at-divergence")

        page.get_by_role("tab", name="Run sets").click()
        settled(page, page.get_by_text("Successes/trials of each run set per task", exact=False).first)
        page.get_by_text("SQL predicate").nth(1).click()  # B by predicate
        box_b = page.locator("input[aria-label='B: predicate over trajectories']")
        box_b.fill("agent = 'nobody'")
        box_b.press("Enter")
        settled(page, page.get_by_text("These run sets share no task", exact=False).first)
        box_b.fill("trajectory_id IN (SELECT trajectory_id FROM steps)")
        box_b.press("Enter")
        settled(page, page.get_by_text("cannot contain a subquery", exact=False).first)
        shot(page, "runsets-03-refused-predicate")
        assert not errors, errors
        page.close()


def test_import_with_agent_instead_of_a_conflict(browser, tiny_corpus: Path, tmp_path: Path) -> None:
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    first, second = tmp_path / "model-a.json", tmp_path / "model-b.json"
    first.write_text(json.dumps([TAU]))
    second.write_text(json.dumps([TAU | {"reward": 0.0, "traj": [*TAU["traj"][:-1],
                                                                  {"role": "assistant", "content": "Other."}]}]))
    with serving(corpus) as app:
        page = browser.new_page(viewport={"width": 1440, "height": 1400})

        def upload(path: Path, agent: str, expect: str) -> None:
            page.goto(f"{app.url}/import")
            settled(page, page.locator("[data-testid=stFileUploaderDropzone]").first)
            field = page.locator("input[aria-label='Agent']")
            field.fill(agent)
            field.press("Enter")
            wait_ready(page, 60_000)
            page.locator("input[type=file]").set_input_files(str(path))
            page.get_by_text(path.name).first.wait_for(timeout=30_000)
            page.get_by_role("button", name="Import", exact=True).click()
            page.get_by_text(expect, exact=False).first.wait_for(timeout=60_000)
            wait_ready(page)  # conflicts are listed after the summary line

        upload(first, "", "1 trajectories added")
        upload(second, "", "0 trajectories added")
        body = page.inner_text("body")
        assert "Conflict" in body and "tau-bench:7:2" in body and "different content" in body
        shot(page, "runsets-04-import-conflict")
        upload(second, "model-b", "1 trajectories added")
        shot(page, "runsets-05-import-with-agent")
        page.close()
