"""In Chromium: the Explore page's export action, and an offline bundle opened from disk with the network off."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from horizonlens.bench.browser import serving
from horizonlens.export.bundle import write_bundle
from horizonlens.query import open_store
from horizonlens.sample.bundled import sample_corpus
from tests.support.browser import settled, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _offline_page(browser, path: Path):  # noqa: ANN001, ANN202 - a Playwright page and the requests it made
    """The bundle opened from a file:// URL; every request is recorded and any but the file itself is refused."""
    url = path.absolute().as_uri()
    context = browser.new_context(viewport={"width": 1300, "height": 1100})
    requests: list[str] = []

    def route(r) -> None:  # noqa: ANN001
        requests.append(r.request.url)
        if r.request.url == url:
            r.continue_()
        else:
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("request", lambda r: requests.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    page.locator(".main-svg").first.wait_for(timeout=60_000)
    return context, page, requests, errors


def test_bundle_opens_offline_and_stays_inert(browser, hostile_corpus: Path, tmp_path: Path) -> None:
    path = tmp_path / "evil.html"
    write_bundle(open_store(hostile_corpus), "evil-t0", path)
    context, page, requests, errors = _offline_page(browser, path)
    try:
        assert set(requests) == {path.absolute().as_uri()}, requests  # nothing but the file itself
        assert not errors, errors  # no script blocked by the policy, no script error
        assert page.evaluate("window.__pwned") is None
        assert page.locator("section.step").count() == 3
        assert "<script>window.__pwned = 1</script>" in page.locator("#step-0 pre").first.inner_text()
        assert page.locator("main img, main a[href]").count() == 0  # hostile markup stayed text
        shot(page, "bundle-hostile")
    finally:
        context.close()


def test_bundle_of_a_replayed_run_offline(browser, tmp_path: Path) -> None:
    store = open_store(sample_corpus())
    tid = store.query("SELECT min(trajectory_id) FROM replay_steps").column(0)[0].as_py()
    path = tmp_path / "replayed.html"
    write_bundle(store, tid, path)
    context, page, requests, errors = _offline_page(browser, path)
    try:
        assert set(requests) == {path.absolute().as_uri()} and not errors
        page.get_by_text("Model signals along the horizon").first.wait_for(timeout=30_000)
        assert page.locator(".js-plotly-plot").count() == 3
        box = page.locator(".js-plotly-plot").first.locator("g.point").nth(2).bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # a timeline bar: go to its step
        page.wait_for_function("location.hash === '#step-2'", timeout=10_000)
        shot(page, "bundle-replayed")
    finally:
        context.close()


def test_explore_export_action(browser, tiny_corpus: Path, tmp_path: Path) -> None:
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    with serving(corpus, env={"HORIZONLENS_HOME": str(tmp_path / "home")}) as app:
        page = browser.new_page(viewport={"width": 1440, "height": 1500}, accept_downloads=True)
        page.goto(app.url)
        settled(page, page.get_by_text("trajectories · page", exact=False).first)
        page.get_by_text("Export selection (48 runs) as training data").click()
        settled(page, page.get_by_role("button", name="Export 48 runs"))
        page.get_by_text("Only successful runs").click()
        settled(page, page.get_by_role("button", name="Export 48 runs"))
        page.get_by_role("button", name="Export 48 runs").click()
        download_button = page.get_by_role("button", name="Download corpus-openai-jsonl-", exact=False)
        settled(page, download_button)
        shot(page, "explore-export")
        with page.expect_download(timeout=60_000) as info:
            download_button.click()
        data = Path(info.value.path()).read_bytes()
        page.close()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = sorted(n.split("/", 1)[1] for n in zf.namelist())
        assert names == ["manifest.json", "problems.jsonl", "train.jsonl"]
        folder = zf.namelist()[0].split("/", 1)[0]
        manifest = json.loads(zf.read(f"{folder}/manifest.json"))
        rows = [json.loads(line) for line in zf.read(f"{folder}/train.jsonl").decode().splitlines()]
    assert manifest["selection"]["only_success"] and manifest["counts"]["runs"] == len(rows) > 0
    assert {r["outcome"] for r in rows} == {"success"}


def test_import_page_reads_an_uploaded_parquet_export(browser, tiny_corpus: Path, tmp_path: Path) -> None:
    from horizonlens.export import ExportOptions, export_runs
    from tests.support.exports import export_corpus

    source = export_corpus(tmp_path / "source")
    export_runs(open_store(source), tmp_path / "out", ExportOptions(format="hf-parquet"))
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    with serving(corpus) as app:
        page = browser.new_page(viewport={"width": 1440, "height": 1200})
        page.goto(f"{app.url}/import")
        settled(page, page.locator("[data-testid=stFileUploaderDropzone]").first)
        page.locator("input[type=file]").set_input_files(str(tmp_path / "out" / "train.parquet"))
        page.get_by_text("train.parquet").first.wait_for(timeout=30_000)
        page.get_by_role("button", name="Import", exact=True).click()
        page.get_by_text("6 trajectories added", exact=False).first.wait_for(timeout=60_000)
        assert "chat-dataset: 6" in page.inner_text("body")
        shot(page, "import-parquet")
        page.close()
