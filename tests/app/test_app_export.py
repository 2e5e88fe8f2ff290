"""The Explore page's export action, the Trajectory page's offline bundle, and Parquet on the Import page."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.app import make_app, page_markdown, shown
from tests.support.exports import export_corpus


def test_explore_exports_the_current_filter(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HORIZONLENS_HOME", str(tmp_path / "home"))
    corpus = export_corpus(tmp_path / "corpus")
    closed = make_app(monkeypatch, corpus)
    closed.run()
    assert not closed.exception, closed.exception
    assert all(b.key != "export_go" for b in closed.button)  # closed: its options are not sent
    at = make_app(monkeypatch, corpus)
    at.session_state["export_open"] = True  # opened, as a click on the expander does
    at.run()
    at.multiselect(key="explore_outcomes").select("success").run()
    assert "**3** trajectories" in page_markdown(at)
    assert at.button(key="export_go").label == "Export 3 runs"
    at.selectbox(key="export_format").select("hf-parquet").run()
    at.toggle(key="export_best").set_value(True).run()
    at.button(key="export_go").click().run()
    assert not at.exception, at.exception
    assert any("2 of 2 selected runs exported" in shown(s.value) for s in at.success)  # best per task of 3 successes
    exports = list((tmp_path / "home" / "exports").iterdir())
    assert len(exports) == 1 and exports[0].name.startswith("corpus-hf-parquet-")
    manifest = json.loads((exports[0] / "manifest.json").read_text())
    assert manifest["selection"]["filter"] == {"outcomes": ["success"]} and manifest["selection"]["best_of_task"]
    assert sorted(p.name for p in exports[0].iterdir()) == ["manifest.json", "problems.jsonl", "train.parquet"]
    buttons = at.get("download_button")
    assert any("corpus-hf-parquet-" in str(b.proto.label) and ".zip" in str(b.proto.label) for b in buttons)


def test_export_refusals_show_as_errors(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HORIZONLENS_HOME", str(tmp_path / "home"))
    corpus = export_corpus(tmp_path / "corpus")
    at = make_app(monkeypatch, corpus)
    at.session_state["export_open"] = True
    at.run()
    at.toggle(key="export_success").set_value(True).run()
    at.multiselect(key="explore_outcomes").select("failure").run()  # failures, then only successes: nothing left
    at.button(key="export_go").click().run()
    assert not at.exception, at.exception
    assert any("selection is empty" in shown(e.value) for e in at.error)


def test_trajectory_page_offers_the_bundle(monkeypatch, tmp_path: Path) -> None:
    corpus = export_corpus(tmp_path / "corpus")
    at = make_app(monkeypatch, corpus, page="trajectory", trajectory="ok-t0")
    at.run()
    assert not at.exception, at.exception
    assert any(str(b.proto.label) == "Offline bundle" for b in at.get("download_button"))
