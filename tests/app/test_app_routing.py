"""The Trajectory step panel and the Routing page at a routing shape with more experts than an axis names.

Agents-A1's topology shrunk to 4 layers x 32 experts (top-8), two trajectories replayed. What the pages
say (the experts they name, rank and outline) is checked against the step tier read with plain SQL.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from horizonlens.figures.routing import token_window
from horizonlens.model.loader import checkpoint_id
from horizonlens.query.store import open_store
from tests.support.app import make_app

pytestmark = pytest.mark.model


def _markdown(at) -> str:  # noqa: ANN001
    return "\n".join(m.value for m in at.markdown)


def _charts(at) -> list[dict]:  # noqa: ANN001
    """The Plotly figures on the page, as the browser receives them."""
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def _title(chart: dict) -> str:
    return (chart["layout"].get("title") or {}).get("text") or ""


def _chart(at, title: str) -> dict:  # noqa: ANN001
    found = [c for c in _charts(at) if _title(c).startswith(title)]
    assert found, [_title(c) for c in _charts(at)]
    return found[0]


def _step_tier(corpus: Path, ckpt: str, tid: str, step: int) -> list[dict]:
    """(layer, expert, tokens) of one step, busiest first within the step (ties: lower layer, lower id)."""
    return open_store(corpus).query(
        "SELECT layer, expert, tokens, tokens / sum(tokens) OVER (PARTITION BY layer) AS share FROM routing_steps "
        "WHERE checkpoint_id = ? AND trajectory_id = ? AND step = ? ORDER BY share DESC, tokens DESC, layer, expert",
        [ckpt, tid, step]).to_pylist()


def _busy_step(corpus: Path, ckpt: str, tid: str) -> int:
    """An agent step with many tokens (its ranking is not all ties)."""
    return open_store(corpus).query(
        "SELECT r.step FROM replay_steps r JOIN steps s USING (trajectory_id, step) WHERE r.checkpoint_id = ? AND "
        "r.trajectory_id = ? AND s.source = 'agent' AND r.step > 0 ORDER BY r.n_tokens DESC, r.step LIMIT 1",
        [ckpt, tid]).column(0)[0].as_py()


def test_step_panel_names_and_ranks_the_step_tables_experts(monkeypatch, shape_corpus) -> None:
    corpus, checkpoint, ids = shape_corpus
    ckpt, tid = checkpoint_id(checkpoint), ids[0]
    step = _busy_step(corpus, ckpt, tid)
    at = make_app(monkeypatch, corpus, checkpoint, page="trajectory", trajectory=tid, step=str(step - 1))
    at.run()
    assert not at.exception, at.exception
    at.button(key="traj_next").click().run()  # Next reruns only the step panel (a fragment)
    assert not at.exception, at.exception
    assert f"### Step {step} ·" in _markdown(at) and at.query_params["step"] == str(step)

    rows = _step_tier(corpus, ckpt, tid, step)
    named = re.findall(r"\*\*E(\d+) in L(\d+)\*\*", _markdown(at))
    assert [(int(e), int(layer)) for e, layer in named] == [(r["expert"], r["layer"]) for r in rows[:5]]

    chart = _chart(at, f"Experts chosen in step {step}")
    heat = chart["data"][0]
    assert heat["y"] == ["L0", "L1", "L2", "L3"]
    for i, layer in enumerate(range(4)):
        ranked = sorted((r for r in rows if r["layer"] == layer), key=lambda r: (-r["tokens"], r["expert"]))
        assert heat["text"][i][:8] == [str(r["expert"]) for r in ranked[:8]]  # the numbers are expert ids, by rank
        rest = sum(r["tokens"] for r in ranked[8:]) / sum(r["tokens"] for r in ranked)
        assert heat["text"][i][8] == f"{rest:.0%}"

    followed = rows[0]["expert"]
    at.selectbox(key=f"traj_expert_{tid}").select(followed).run()
    assert not at.exception, at.exception
    layers_ranked = sum(
        followed in [r["expert"] for r in sorted((r for r in rows if r["layer"] == layer),
                                                 key=lambda r: (-r["tokens"], r["expert"]))[:8]]
        for layer in range(4))
    assert _chart(at, f"Experts chosen in step {step} · E{followed} outlined ({layers_ranked} of 4 layers)")


def test_token_view_shows_one_window_of_the_token_tier(monkeypatch, shape_corpus) -> None:
    corpus, checkpoint, ids = shape_corpus
    ckpt, tid = checkpoint_id(checkpoint), ids[0]
    step = _busy_step(corpus, ckpt, tid)
    at = make_app(monkeypatch, corpus, checkpoint, page="trajectory", trajectory=tid, step=str(step))
    at.run()
    assert not any(_title(c).startswith("Top-1 expert") for c in _charts(at))  # off by default
    at.toggle(key="traj_show_tokens").set_value(True).run()
    assert not at.exception, at.exception
    store = open_store(corpus)
    tokens = store.query("SELECT token_index, layer, experts FROM routing WHERE checkpoint_id = ? AND "
                         "trajectory_id = ? AND step = ? ORDER BY token_index, layer", [ckpt, tid, step]).to_pylist()
    n_tokens = len({t["token_index"] for t in tokens})
    heat = _chart(at, "Top-1 expert per token and layer")["data"][0]
    window = token_window(32)
    assert n_tokens > window and len(heat["x"]) == window  # one window of the step's tokens, not all of them
    first = [t for t in tokens if t["token_index"] == tokens[0]["token_index"]]
    assert [row[0] for row in heat["text"]] == [str(t["experts"][0]) for t in first]  # top-1 id per layer
    at.slider(key=f"tok_win_{tid}_{step}").set_value(window // 2).run()  # the next window
    heat = _chart(at, "Top-1 expert per token and layer")["data"][0]
    shifted = sorted({t["token_index"] for t in tokens})[window // 2]
    assert [row[0] for row in heat["text"]] == [str(t["experts"][0]) for t in tokens if t["token_index"] == shifted]


def test_routing_page_names_the_busiest_experts_and_folds_the_rest(monkeypatch, shape_corpus) -> None:
    corpus, checkpoint, ids = shape_corpus
    ckpt, tid = checkpoint_id(checkpoint), ids[1]
    at = make_app(monkeypatch, corpus, checkpoint, page="routing", trajectory=tid)
    at.run()
    assert not at.exception, at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "2 trajectories replayed · 4 MoE layers (0–3) · 32 experts" in captions
    assert at.selectbox(key="routing_traj").value == tid
    heat = _chart(at, "Expert load per step, layer 3")["data"][0]
    totals = open_store(corpus).query(
        "SELECT expert, sum(tokens) AS n FROM routing_steps WHERE checkpoint_id = ? AND trajectory_id = ? AND "
        "layer = 3 GROUP BY 1 ORDER BY n DESC, expert", [ckpt, tid]).to_pylist()
    assert heat["y"][:24] == [f"E{r['expert']}" for r in totals[:24]]
    assert heat["y"][24] == "other (8)" and len(heat["y"]) == 25
    # only the open tab runs: the corpus-wide charts were not computed
    assert not any("Co-activation" in _title(c) for c in _charts(at))
    # a choice in one tab survives a look at another (lazy tabs do not draw the closed tab's widgets)
    at.select_slider(key="routing_layer").set_value(1).run()
    at.session_state["routing_tab"] = "Replayed corpus"
    at.run()
    assert not at.exception, at.exception
    assert any("Co-activation" in _title(c) for c in _charts(at))
    at.session_state["routing_tab"] = "One trajectory"
    at.run()
    assert at.select_slider(key="routing_layer").value == 1
    assert _chart(at, "Expert load per step, layer 1")
