"""Streamlit AppTest for every page: loads without exception on the sample-like corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


@pytest.fixture()
def app(tiny_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("HORIZONLENS_CORPUS", str(tiny_corpus))
    monkeypatch.delenv("HORIZONLENS_CHECKPOINT", raising=False)
    return AppTest.from_file(MAIN, default_timeout=60)


def test_explore_loads(app: AppTest) -> None:
    app.run()
    assert not app.exception, app.exception
    assert app.title[0].value == "Explore"
    assert any(m.label == "Trajectories" for m in app.metric)


def test_bad_corpus_path_shows_error(app: AppTest, tmp_path: Path) -> None:
    app.run()
    app.sidebar.text_input(key="sidebar_corpus_input").set_value(str(tmp_path / "nowhere")).run()
    assert not app.exception
    assert any("not a directory" in e.value for e in app.sidebar.error)
