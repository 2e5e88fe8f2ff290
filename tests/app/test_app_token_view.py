"""The token view: a surprisal row over the layers, horizontal labels; "what would the model do" part by part."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from horizonlens.model.loader import checkpoint_id
from horizonlens.query.store import open_store
from horizonlens.replays import ReplayCache
from horizonlens.replays.layout import replay_dataset
from tests.support.app import make_app, page_markdown

pytestmark = pytest.mark.model


def _decoded(value):  # noqa: ANN001, ANN202 - JSON from Plotly
    """Plotly's JSON with its typed arrays ({dtype, bdata, shape}) decoded to lists."""
    if isinstance(value, dict) and "bdata" in value:
        shape = [int(n) for n in str(value.get("shape", "-1")).split(",")]
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).reshape(shape).tolist()
    if isinstance(value, dict):
        return {k: _decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    return value


def _token_chart(at) -> dict:  # noqa: ANN001 - an AppTest
    """The token view as the browser receives it."""
    charts = [_decoded(json.loads(el.proto.spec)) for el in at.get("plotly_chart")]
    return next(c for c in charts if (c["layout"].get("title") or {}).get("text", "").startswith("Top-1 expert"))


def _agent_step(corpus: Path, ckpt: str, tid: str) -> int:
    return open_store(corpus).query(
        "SELECT r.step FROM replay_steps r JOIN steps s USING (trajectory_id, step) WHERE r.checkpoint_id = ? AND "
        "r.trajectory_id = ? AND s.source = 'agent' AND s.reasoning IS NOT NULL AND len(s.tool_calls) > 0 "
        "ORDER BY r.step LIMIT 1", [ckpt, tid]).column(0)[0].as_py()


def _tokens_shown(monkeypatch, corpus: Path, checkpoint: Path, tid: str, step: int):  # noqa: ANN001, ANN202
    """The Trajectory page at a step with its token view switched on."""
    at = make_app(monkeypatch, corpus, checkpoint, page="trajectory", trajectory=tid, step=str(step))
    at.run()
    at.toggle(key="traj_show_tokens").set_value(True).run()
    assert not at.exception, at.exception
    return at


def test_token_view_has_a_surprisal_row_and_horizontal_labels(monkeypatch, shape_corpus) -> None:
    corpus, checkpoint, ids = shape_corpus
    ckpt, tid = checkpoint_id(checkpoint), ids[0]
    step = _agent_step(corpus, ckpt, tid)
    at = _tokens_shown(monkeypatch, corpus, checkpoint, tid, step)
    chart = _token_chart(at)
    layers, row = chart["data"][0], chart["data"][1]
    assert list(row["y"]) == ["surprisal"] and list(row["x"]) == list(layers["x"])
    stored = ReplayCache(corpus, ckpt).read_token_surprisal(tid).to_pandas()
    mine = stored[stored["step"] == step].set_index("token_index")
    first = sorted(mine.index)[: len(row["x"])]
    assert list(row["z"][0]) == pytest.approx([float(mine.loc[t, "surprisal"]) for t in first], nan_ok=True)
    assert row["text"][0][0] == f"{float(mine.loc[first[0], 'surprisal']):.1f}"
    assert all(label.endswith(f"<br>{t}") for label, t in zip(layers["x"], first, strict=True))  # text, then position
    axis = chart["layout"]["xaxis2"]
    assert axis["tickangle"] == 0 and list(axis["range"]) == [-0.5, 15.5]  # 16 in view; the rest by panning
    assert chart["layout"]["dragmode"] == "pan"
    assert not any(b.key and b.key.startswith("replay_again") for b in at.button)


def test_an_old_replay_without_token_surprisal_offers_to_replay(monkeypatch, shape_corpus, tmp_path: Path) -> None:
    corpus, checkpoint, ids = shape_corpus
    ckpt, tid = checkpoint_id(checkpoint), ids[0]
    copy = Path(shutil.copytree(corpus, tmp_path / "corpus"))
    cache = ReplayCache(copy, ckpt)
    with replay_dataset(copy, ckpt).transaction() as txn:  # as replays stored before the table existed
        txn.remove([f for f in txn.snapshot.files if f.table == "token_surprisal"])
        txn.commit()
    assert cache.read_token_surprisal(tid) is None
    at = _tokens_shown(monkeypatch, copy, checkpoint, tid, _agent_step(copy, ckpt, tid))
    assert len(_token_chart(at)["data"]) == 1  # the layers only
    assert any("without per-token surprisal" in c.value for c in at.caption)
    at.button(key=f"replay_again_{tid}").click().run()
    assert not at.exception, at.exception
    assert cache.read_token_surprisal(tid) is not None
    assert len(_token_chart(at)["data"]) == 2


def test_what_would_the_model_do_keeps_the_two_actions_apart(monkeypatch, shape_corpus) -> None:
    corpus, checkpoint, ids = shape_corpus
    ckpt, tid = checkpoint_id(checkpoint), ids[0]
    step = _agent_step(corpus, ckpt, tid)
    row = open_store(corpus).steps(tid, step, step + 1).to_pylist()[0]
    at = make_app(monkeypatch, corpus, checkpoint, page="trajectory", trajectory=tid, step=str(step))
    at.session_state["wwd_open"] = True
    at.run()
    at.number_input(key="wwd_max").set_value(16).run()
    at.button(key=f"wwd_{tid}_{step}_go").click().run()
    assert not at.exception, at.exception
    md = page_markdown(at)
    model, recorded = md.index("The model's own action"), md.index("The recorded action")
    assert model < recorded
    after = md[recorded:]
    assert "**Reasoning**" in after and "**Tool call**" in after
    codes = [c.value for c in at.code]
    assert row["reasoning"] in codes  # the recorded reasoning alone in its block
    call = json.loads(next(c for c in codes if c.lstrip().startswith("{") and row["tool_calls"][0]["name"] in c))
    assert call == {"name": row["tool_calls"][0]["name"], "arguments": json.loads(row["tool_calls"][0]["arguments"])}
