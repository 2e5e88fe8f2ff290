"""Real-browser tests: the app started as a subprocess, driven in headless Chromium (Debian's package).

Screenshots of each page go to test-artifacts/screenshots/ (printed at the end); page timings go to
test-artifacts/browser-timings.json.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from horizonlens.bench.browser import serving, step_heading, wait_ready
from tests.support.browser import TIMINGS, assert_no_planted_markup, heading, planted_requests, settled, shot, timed
from tests.support.corpora import HOSTILE, MARKDOWN_IMAGE, PLANTED_HOST

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_walkthrough(browser, tiny_corpus: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    with serving(corpus, tiny_checkpoint) as app:
        page = browser.new_page(viewport={"width": 1440, "height": 1600})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        timed("explore_first_render_s", page, lambda: page.goto(app.url), page.locator(".js-plotly-plot").first)
        assert page.get_by_text("Trajectories", exact=True).first.is_visible()
        shot(page, "01-explore")

        # open a trajectory by selecting the first row of the table (the row marker of the data grid)
        grid = page.locator("[data-testid=stDataFrame]").first
        grid.scroll_into_view_if_needed()
        box = grid.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + 14, box["y"] + 35 + 17)
        page.wait_for_url("**/trajectory**", timeout=60_000)
        first_step = page.get_by_role("heading", name=re.compile(r"^Step \d+")).first
        settled(page, first_step)
        assert heading(page, "Trajectory").is_visible()
        step = int(re.match(r"Step (\d+)", first_step.inner_text()).group(1))  # type: ignore[union-attr]
        shot(page, "02-trajectory")

        timed("next_step_without_replay_s", page, lambda: page.get_by_role("button", name="Next ▶").click(),
               step_heading(page, step + 1))
        timed("replay_one_trajectory_s", page,
               lambda: page.get_by_role("button", name="▶ Replay this trajectory").click(),
               page.get_by_text("Surprisal (nats)", exact=True).first)
        expect(page.get_by_text("Experts chosen in step", exact=False).first).to_be_visible()
        shot(page, "03-trajectory-replayed")

        timed("next_step_cached_replay_s", page, lambda: page.get_by_role("button", name="Next ▶").click(),
               step_heading(page, step + 2))
        expect(page.get_by_text("Surprisal (nats)", exact=True).first).to_be_visible()

        timed("routing_page_s", page, lambda: page.get_by_role("link", name="Routing").click(),
               heading(page, "Expert routing"))
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        shot(page, "04-routing")

        timed("compounding_page_s", page, lambda: page.get_by_role("link", name="Compounding").click(),
               page.get_by_text("Survival to the first failed check", exact=False).first)
        shot(page, "05-compounding")
        page.get_by_role("tab", name="Compounding signature").click()  # a lazy tab: runs only once opened
        settled(page, page.get_by_text("pass^k: chance that k trials", exact=False).first)
        shot(page, "05-compounding-signature")

        for name, title in (("Compare", "Compare trajectories"), ("SQL", "SQL")):
            timed(f"{name.lower()}_page_s", page, lambda n=name: page.get_by_role("link", name=n).click(),
                   heading(page, title))
            shot(page, f"06-{name.lower()}")
        assert not errors, errors
        page.close()
    TIMINGS["stop_after_sigterm_s"] = round(app.stopped_after_s or 0.0, 3)


def test_serve_stops_on_sigterm_with_a_browser_connected(browser, tiny_corpus: Path) -> None:
    """`serve` is the server: SIGTERM stops it while a page is open (serving() kills and fails after 30 s)."""
    with serving(tiny_corpus) as app:
        page = browser.new_page()
        page.goto(app.url)
        settled(page, page.locator(".js-plotly-plot").first)
    assert app.process.returncode is not None and app.stopped_after_s is not None
    TIMINGS["sigterm_with_browser_s"] = round(app.stopped_after_s, 3)
    page.close()


def test_a_bad_link_gets_a_message_and_no_server_path(browser, tiny_corpus: Path) -> None:
    """?step=² (str.isdigit accepts it, int does not) showed a traceback with the server's file paths."""
    from horizonlens.query import open_store
    from tests.support.corpora import REPO

    tid = open_store(tiny_corpus).list_trajectories(limit=1).rows["trajectory_id"][0].as_py()
    with serving(tiny_corpus) as app:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(f"{app.url}/trajectory?trajectory={tid}&step=%C2%B2")
        settled(page, page.get_by_text("is not a step number", exact=False).first)
        body = page.locator("body").inner_text()
        assert "Traceback" not in body and "site-packages" not in body and str(REPO) not in body
        assert step_heading(page, 0).is_visible() or "Step " in body
        shot(page, "08-bad-link")
        page.goto(f"{app.url}/trajectory?trajectory=a%00b&step=1")
        settled(page, page.get_by_text("control characters", exact=False).first)
        assert "Traceback" not in page.locator("body").inner_text()
        page.close()


def test_html_injection_never_executes(browser, hostile_corpus: Path) -> None:
    """Hostile names and text on every page: nothing runs, nothing is fetched from the planted host, no link to it."""
    with serving(hostile_corpus) as app:
        page = browser.new_page(viewport={"width": 1440, "height": 1400})
        planted = planted_requests(page)
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{app.url}/trajectory?trajectory=evil-t0&step=1")
        settled(page, step_heading(page, 1))
        body = page.locator("body").inner_text()
        assert "<script>window.__pwned = 1</script>" in body  # shown literally
        assert page.locator("img[src=x]").count() == 0
        assert "Tool call · ![tool](http://" in body.replace("\u2060", "")  # a tool's name, as typed
        assert_no_planted_markup(page)
        assert HOSTILE.split("'")[0] in body
        shot(page, "07-hostile")
        page.goto(f"{app.url}/trajectory?trajectory=evil-t0&step=2")
        settled(page, step_heading(page, 2))
        assert MARKDOWN_IMAGE in page.locator("body").inner_text().replace("\u2060", "")  # the check detail
        assert_no_planted_markup(page)
        shot(page, "07-hostile-check-detail")
        for path, content in (("compare?trajectory=evil-t0", "Compare trajectories"),
                              ("compounding", "Error compounding")):
            page.goto(f"{app.url}/{path}")
            settled(page, heading(page, content))
            assert_no_planted_markup(page)
        page.get_by_role("combobox", name="Facet by").click()
        page.get_by_role("option", name="agent").click()
        legend = page.locator("text.legendtext", has_text=MARKDOWN_IMAGE.split("]")[0]).first  # names the agent
        legend.wait_for(state="attached", timeout=120_000)
        wait_ready(page)
        assert_no_planted_markup(page)
        shot(page, "07-hostile-compounding")
        page.goto(f"{app.url}/sql")
        settled(page, heading(page, "SQL"))
        page.get_by_role("combobox", name="Examples").click()
        page.get_by_role("option", name="(write your own)").click()
        area = page.locator("textarea").first
        area.wait_for()
        area.fill(f'SELECT * FROM "{MARKDOWN_IMAGE} https://{PLANTED_HOST}/sql"')
        page.get_by_role("button", name="Run").click()
        settled(page, page.locator("[data-testid=stAlertContentError]").first)
        assert_no_planted_markup(page)
        shot(page, "07-hostile-sql")
        page.goto(f"{app.url}/?")
        settled(page, page.locator(".js-plotly-plot").first)
        for label in ("Agent", "Teacher", "Uses tool"):  # option lists hold names from the corpus
            page.get_by_role("combobox", name=label, exact=True).first.click()
            page.get_by_role("option").first.wait_for()
            assert_no_planted_markup(page)
            page.keyboard.press("Escape")
        shot(page, "07-hostile-explore")
        page.get_by_label("Search task and step content (case-insensitive)").fill("<script>")
        page.keyboard.press("Enter")
        settled(page, page.get_by_text("1 trajectories", exact=False).first)  # only the hostile one matches
        assert_no_planted_markup(page)
        assert not dialogs
        assert not planted, planted
        page.close()


def test_upload_import(browser, tiny_corpus: Path, tmp_path: Path) -> None:
    from tests.support.corpora import TAU

    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    src = tmp_path / "tau-run.json"
    src.write_text(json.dumps([TAU]))
    with serving(corpus) as app:
        page = browser.new_page(viewport={"width": 1440, "height": 1200})
        page.goto(f"{app.url}/import")
        settled(page, page.locator("[data-testid=stFileUploaderDropzone]").first)
        page.locator("input[type=file]").set_input_files(str(src))
        page.get_by_text("tau-run.json").first.wait_for(timeout=30_000)
        page.get_by_role("button", name="Import", exact=True).click()
        page.get_by_text("1 trajectories added", exact=False).first.wait_for(timeout=60_000)
        shot(page, "08-import")
        page.goto(app.url)
        settled(page, page.get_by_text("49", exact=True).first)  # 48 sample + 1 imported
        page.close()


def test_upload_hostile_files(browser, tiny_corpus: Path, tmp_path: Path) -> None:
    """Hostile uploads end as listed problems (never a traceback); a target outside the allowed places is refused."""
    from tests.support.hostile.cases import HEADER, sample, tau
    from tests.support.hostile.zipkit import Member, write_zip

    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    files = [write_zip(tmp_path / "packed.eval", [Member("header.json", HEADER, 9), Member("samples/a.json",
                                                                                           sample(1), 93),
                                                  Member("samples/b.json", sample(2), flags=1)]),
             tmp_path / "garbage-first.jsonl", tmp_path / "huge-number.json"]
    files[1].write_text("%%% <script>alert(1)</script>\n" + json.dumps(tau(1)) + "\n")
    files[2].write_text("[" + json.dumps(tau(2)) + ', {"task_id": 3, "reward": ' + "9" * 5000 + "}]")
    with serving(corpus) as app:
        page = browser.new_page(viewport={"width": 1440, "height": 1400})
        page.goto(f"{app.url}/import")
        settled(page, page.locator("[data-testid=stFileUploaderDropzone]").first)
        page.locator("input[type=file]").set_input_files([str(f) for f in files])
        page.get_by_text("huge-number.json").first.wait_for(timeout=30_000)
        page.get_by_role("button", name="Import", exact=True).click()
        page.get_by_text("3 trajectories added", exact=False).first.wait_for(timeout=60_000)
        wait_ready(page)  # the problems are listed after the summary line: read the page once the run is over
        body = page.inner_text("body")
        assert "encrypted" in body and "line 1: not JSON" in body and "4,300 digits" in body
        assert "Traceback" not in body and not page.evaluate("window.__pwned === 1")
        shot(page, "09-import-hostile")
        page.locator("input[aria-label='Into corpus']").fill("/etc/horizonlens-pwned")
        page.locator("input[aria-label='Into corpus']").press("Enter")
        wait_ready(page, 60_000)
        page.get_by_role("button", name="Import", exact=True).click()
        page.get_by_text("imports only into", exact=False).first.wait_for(timeout=30_000)
        assert not Path("/etc/horizonlens-pwned").exists()
        shot(page, "10-import-refused-target")
        page.close()


def test_page_benchmark_times_every_page(browser, tiny_corpus: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """`horizonlens bench` times each page in Chromium: every page loads, settles and answers its interaction."""
    from horizonlens.bench.pages import BASELINES, CHART_FLOOR, FLOOR, FLOOR_PARTS, PAGES, measure_pages
    from horizonlens.derived.build import build_all
    from horizonlens.model.batch import ensure_replayed
    from horizonlens.model.loader import load_checkpoint
    from horizonlens.query.store import open_store

    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    build_all(corpus)
    store = open_store(corpus)
    ids = store.query("SELECT trajectory_id FROM trajectories WHERE n_failed_checks > 0 ORDER BY n_tokens LIMIT 2"
                      ).column(0).to_pylist()
    loaded = load_checkpoint(tiny_checkpoint)
    for tid in ids:
        ensure_replayed(store, loaded, tid)
    timings = measure_pages(corpus, tiny_checkpoint, ids[0], repeats=1, interactions=2, browser=browser, parts=True)
    assert set(timings) == {p.name for p in (*PAGES, *BASELINES, *FLOOR_PARTS)}
    floor = timings[FLOOR.name]
    for name, t in timings.items():
        assert not t["failures"], (name, t["failures"])
        assert t["first_load_s"] > 0 and t["cold_s"] > 0, name
        if name.startswith("floor+"):  # a part of a page beside the floor: a load, no interaction
            assert t["interaction_s"] is None and t["ratio"] == t["first_load_s"] / floor["first_load_s"], name
            continue
        assert t["interaction_s"] is not None and t["interaction_s"] > 0, name
        b = t["breakdown"]  # each load split into its parts, which add up to the load
        assert b["runs"] >= 1 and b["ws_kb"] > 0 and b["script_kb"] > 0 and b["document_s"] > 0, name
        assert b["document_s"] + b["to_run_s"] + b["runs_s"] + b["render_s"] == pytest.approx(b["total_s"]), name
        if name not in (FLOOR.name, CHART_FLOOR.name):  # every page beside the floors served in the same run
            assert t["floor_s"] == floor["first_load_s"] and t["ratio"] == t["first_load_s"] / floor["first_load_s"]
            assert t["over_floor_rerun_s"] == pytest.approx(t["interaction_s"] - floor["interaction_s"]), name
    assert len(timings["trajectory"]["interactions_s"]) == 2 and len(floor["interactions_s"]) == 2
    assert floor["breakdown"]["figures"] == 0 and timings[CHART_FLOOR.name]["breakdown"]["figures"] == 1
    assert timings["floor+dataframe"]["breakdown"]["script_kb"] > floor["breakdown"]["script_kb"]  # the grid's chunk
    assert timings["explore"]["breakdown"]["figures"] >= 2
    assert timings["explore"]["chart_ratio"] == timings["explore"]["first_load_s"] / timings[CHART_FLOOR.name][
        "first_load_s"]
    TIMINGS.update({f"bench_{k}_first_load_s": round(v["first_load_s"], 3) for k, v in timings.items()})
