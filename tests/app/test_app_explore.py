"""Explore under a filter: headline figures and charts follow it, beside the corpus; the sort column in view."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from horizonlens.query import TrajectoryFilter, open_store
from tests.support.app import make_app, page_markdown


def _metrics(at) -> dict[str, tuple[str, str]]:  # noqa: ANN001 - an AppTest
    return {m.label: (m.value, m.proto.delta) for m in at.metric}


def test_headline_figures_follow_the_filters(monkeypatch, tiny_corpus: Path) -> None:
    at = make_app(monkeypatch, tiny_corpus)
    at.run()
    assert not at.exception, at.exception
    whole = _metrics(at)
    assert whole["Trajectories"] == ("48", "")  # no filter: the corpus, nothing beside it
    store = open_store(tiny_corpus)
    # the domain with the most failed runs: the selection is its failures
    domain = store.scalar("SELECT domain FROM trajectories WHERE outcome = 'failure' GROUP BY domain "
                          "ORDER BY count(*) DESC, domain LIMIT 1")
    at.multiselect(key="explore_domains").select(domain).run()
    at.multiselect(key="explore_outcomes").select("failure").run()
    flt = TrajectoryFilter(domains=[domain], outcomes=["failure"])
    n = store.list_trajectories(flt).total
    assert n > 0
    got = _metrics(at)
    assert got["Trajectories"] == (f"{n:,}", "corpus: 48")
    assert got["Success rate"] == ("0%", f"corpus: {whole['Success rate'][0]}")
    assert got["Tasks"][1] == f"corpus: {whole['Tasks'][0]}"
    assert f"**{n:,}** trajectories" in page_markdown(at)
    assert any(f"{n} of 48 trajectories that match the filters" in c.value for c in at.caption)
    # the charts are built from the filtered rows: their CSV data is the selection's
    charts = {c.proto.id: c for c in at.get("plotly_chart")}
    figure = json.loads(next(iter(charts.values())).proto.spec)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in charts.values()]
    assert all(f"{n} of 48 trajectories" in t for t in titles), titles
    bars = [t for t in figure["data"] if t["type"] == "bar"]
    assert [b["x"] for b in bars][0] == [domain]


def test_sort_column_is_pinned_beside_the_id(monkeypatch, tiny_corpus: Path) -> None:
    at = make_app(monkeypatch, tiny_corpus)
    at.run()
    at.selectbox(key="explore_sort").select("cost_usd").run()
    frame = at.dataframe(key="explore_table")
    assert list(frame.proto.column_order)[:2] == ["trajectory_id", "cost_usd"]
    config = json.loads(frame.proto.columns)
    assert config["cost_usd"]["pinned"] and config["trajectory_id"]["pinned"]
    assert config["cost_usd"]["label"] == "cost_usd ↓"
    costs = frame.value["cost_usd"].tolist()
    assert costs == sorted(costs, reverse=True)


def test_match_offers_both_modes_and_says_how_each_is_answered(monkeypatch, tiny_corpus: Path,
                                                               tmp_path: Path) -> None:
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    shutil.rmtree(corpus / "index")  # a corpus without its search index (as the bundled sample ships)
    at = make_app(monkeypatch, corpus)
    at.run()
    radio = at.radio(key="explore_text_mode")
    assert radio.options == ["all words", "exact text"]
    assert "only with the search index" in radio.help and "by scanning the steps" in radio.help
    at.text_input(key="explore_text").set_value("Error").run()
    assert any("All words" in w.value and "exact text" in w.value for w in at.warning)
    exact = open_store(corpus).list_trajectories(TrajectoryFilter(text="Error", text_mode="exact")).total
    assert f"**{exact:,}** trajectories" in page_markdown(at)
    at.radio(key="explore_text_mode").set_value("exact text").run()
    assert not at.warning


def test_match_with_the_index_answers_all_words(monkeypatch, tiny_corpus: Path) -> None:
    at = make_app(monkeypatch, tiny_corpus)
    at.run()
    assert "answered through its search index" in at.radio(key="explore_text_mode").help
    at.text_input(key="explore_text").set_value("Error found").run()
    assert not at.warning
    words = open_store(tiny_corpus).list_trajectories(TrajectoryFilter(text="Error found", text_mode="words")).total
    assert f"**{words:,}** trajectories" in page_markdown(at)
