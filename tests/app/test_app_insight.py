"""The Failure modes, Tools and Routing pages on the bundled corpus: what they say matches the metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from horizonlens.metrics import modes as mmodes
from horizonlens.metrics import tool_use
from horizonlens.query.store import open_store
from tests.support.app import make_app
from tests.support.corpora import REPO


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(shutil.copytree(REPO / "sample_data" / "corpus", tmp_path_factory.mktemp("insight") / "corpus"))


def _titles(at) -> list[str]:  # noqa: ANN001
    return [(json.loads(c.proto.spec)["layout"].get("title") or {}).get("text") or "" for c in at.get("plotly_chart")]


def test_failure_modes_page(monkeypatch, corpus: Path) -> None:
    at = make_app(monkeypatch, corpus, page="failure_modes")
    at.run()
    assert not at.exception, at.exception
    result = mmodes.find_modes(open_store(corpus))  # kept by the page's run: read back, not recomputed
    caption = at.caption[0].value
    assert f"{result.note['failed_steps']:,} failed steps" in caption and "random sample of 5,000" in caption
    assert "Failed steps per failure mode" in _titles(at)
    table = at.dataframe[0].value
    assert table["size"].tolist() == result.modes["size"].tolist()
    assert table["label"].tolist() == result.modes["label"].tolist()
    at.text_input(key="modes_where").input("t.domain = 'nothing'").run()
    assert any("no failed steps" in i.value for i in at.info)


def test_tools_page(monkeypatch, corpus: Path) -> None:
    at = make_app(monkeypatch, corpus, page="tools")
    at.run()
    assert not at.exception, at.exception
    s = tool_use.tool_use(open_store(corpus))["summary"]
    values = {m.label: m.value for m in at.metric}
    assert values["repeated calls"] == f"{s['repeated_calls']:,}"
    assert values["runs with loops"] == f"{s['runs_with_loops']:,}"


def test_routing_probe_tab_discloses_the_runs_it_uses(monkeypatch, corpus: Path) -> None:
    at = make_app(monkeypatch, corpus, REPO / "sample_data" / "checkpoint", page="routing")
    at.session_state["routing_tab"] = "Probe, map and health"
    at.run()
    assert not at.exception, at.exception
    assert any("not drawn at random" in w.value for w in at.warning)
    assert any("Routes by teacher" in m.value for m in at.markdown)
    titles = _titles(at)
    assert any(t.startswith("Does routing predict teacher") for t in titles)
    assert any(t.startswith("Replayed steps by routing signature") for t in titles)
