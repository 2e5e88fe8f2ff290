"""Figures built from a hostile corpus: names from the data reach Plotly only as text, never as its HTML subset."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import plotly.graph_objects as go
import pytest

from horizonlens.figures import compounding as cfig
from horizonlens.figures import corpus as corpus_figs
from horizonlens.figures import routing as rfig
from horizonlens.figures.style import plain
from horizonlens.metrics import compounding, timeline
from horizonlens.query import TrajectoryFilter, open_store
from tests.support.corpora import HTML_LINK, MARKDOWN_IMAGE

# the markup the figure builders write themselves; anything else that looks like a tag came from the data
OWN_MARKUP = re.compile(r"<br>|<extra></extra>")


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _strings(value)
    elif hasattr(node, "tolist"):
        yield from _strings(node.tolist())


def _assert_text_only(fig: go.Figure) -> list[str]:
    strings = list(_strings(fig.to_plotly_json()))
    for s in strings:
        assert "<" not in OWN_MARKUP.sub("", s), s
    return strings


def test_plain_escapes_plotly_markup_and_cuts() -> None:
    assert plain("<a href='x'>y</a> & <b>") == "&lt;a href='x'&gt;y&lt;/a&gt; &amp; &lt;b&gt;"
    assert plain("x" * 500, limit=10) == "x" * 10 + "…"


def test_group_rates_and_compounding_legends(hostile_corpus: Path) -> None:
    store = open_store(hostile_corpus)
    groups = store.by_group("agent").to_pandas()
    strings = _assert_text_only(corpus_figs.group_rates(groups, "agent"))
    assert plain(f"{MARKDOWN_IMAGE} {HTML_LINK}") in strings  # the agent's name is there, as text
    flt = TrajectoryFilter()
    for fig in (cfig.survival(compounding.survival(store, "agent", flt)),
                cfig.self_conditioning(compounding.self_conditioning(store, "agent", flt)),
                cfig.pass_k(compounding.pass_k(store, "agent", flt))):
        _assert_text_only(fig)
    store.close()


def test_timeline_hover_and_specialization(hostile_corpus: Path) -> None:
    store = open_store(hostile_corpus)
    tl = timeline.error_timeline(store, "evil-t0")
    strings = _assert_text_only(rfig.timeline_strip(tl, 1))
    assert any(plain(HTML_LINK) in s for s in strings)  # the error label, shown as typed
    load = pd.DataFrame({"layer": [0, 0], "group": [HTML_LINK, "search"], "expert": [0, 1],
                         "share": [0.75, 0.25], "uniform": [0.5, 0.5], "specialization": [1.5, 0.5]})
    _assert_text_only(rfig.specialization(load, 0, "domain"))
    _assert_text_only(rfig.agreement(pd.DataFrame({"layer": [0], "agreement": [1.0], "top1_agreement": [1.0]}),
                                      HTML_LINK, "<b>b</b>"))
    store.close()


@pytest.mark.parametrize("token", ["<a href='http://planted.invalid/t'>t</a>", "<b>", "&amp;"])
def test_token_view_labels(token: str) -> None:
    tokens = pd.DataFrame({"token_index": [0, 1], "text": [token, "ok"]})
    routing = pd.DataFrame({"token_index": [0, 1], "layer": [0, 0], "experts": [[1, 2], [0, 3]],
                            "weights": [[0.6, 0.4], [0.5, 0.5]], "entropy": [1.0, 1.2]})
    _assert_text_only(rfig.token_expert_view(tokens, routing, 4))


def test_bench_cost_vs_size_one_line_per_query_and_engine() -> None:
    from horizonlens.figures.bench import cost_vs_size

    corpora = {"1000": {"explore": {"horizonlens": {"median_s": 0.01}, "pandas": {"median_s": 0.2}}},
               "10000": {"explore": {"horizonlens": {"median_s": 0.02}, "pandas": {"median_s": 2.0}}}}
    fig = cost_vs_size(corpora)
    assert fig is not None
    assert [t.name for t in fig.data] == ["Explore: horizonlens", "Explore: pandas"]  # nothing measured: no line
    assert list(fig.data[1].x) == [1000, 10000] and list(fig.data[1].y) == [0.2, 2.0]
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert cost_vs_size({"1000": corpora["1000"]}) is None


def test_token_view_surprisal_row_and_labels() -> None:
    hostile = "<a href='http://planted.invalid/t'>t</a>"
    tokens = pd.DataFrame({"token_index": [7, 8, 9], "text": [hostile, " HL", "\n"]})
    routing = pd.DataFrame({"token_index": [7, 8, 9], "layer": [0, 0, 0], "experts": [[1, 2], [0, 3], [2, 1]],
                            "weights": [[0.6, 0.4], [0.5, 0.5], [0.7, 0.3]], "entropy": [1.0, 1.2, 0.9]})
    surprisal = pd.DataFrame({"token_index": [7, 8, 9], "surprisal": [float("nan"), 7.25, 0.5],
                              "top1": [False, False, True], "scored": [False, True, True]})
    fig = rfig.token_expert_view(tokens, routing, 4, surprisal=surprisal)
    strings = _assert_text_only(fig)
    layers, row = fig.data
    assert list(layers.x)[1:] == ["·HL<br>8", "⏎<br>9"]  # whitespace made visible, the position below
    assert list(row.text[0]) == ["–", "7.2", "0.5"] and row.y == ("surprisal",)
    assert "not the model's top-1" in row.customdata[0][1] and "agent-written (scored)" in row.customdata[0][1]
    assert any("planted.invalid" in s for s in strings)  # shown as text, escaped
    assert fig.layout.xaxis2.tickangle == 0 and fig.layout.dragmode == "pan"
    # without surprisal: the layers alone, as before
    assert len(rfig.token_expert_view(tokens, routing, 4).data) == 1
