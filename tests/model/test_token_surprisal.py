"""Per-token surprisal kept with the replay (the token view's row), and the model's action split like the recorded."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from horizonlens.metrics.replays import step_token_surprisal  # noqa: E402
from horizonlens.model.batch import ensure_replayed  # noqa: E402
from horizonlens.model.loader import load_checkpoint  # noqa: E402
from horizonlens.model.render import recorded_action, split_action  # noqa: E402
from horizonlens.model.replay import ReplayConfig, continue_from, replay_trajectory  # noqa: E402
from horizonlens.query import open_store  # noqa: E402
from horizonlens.replays import ReplayCache  # noqa: E402

pytestmark = pytest.mark.model


def _trajectory(corpus: Path) -> tuple[str, list[dict]]:
    import pyarrow.parquet as pq

    steps = pq.read_table(corpus / "steps").to_pylist()
    tid = next(s["trajectory_id"] for s in steps if s["trajectory_id"].startswith("tool_calling"))
    return tid, [s for s in steps if s["trajectory_id"] == tid]


def test_surprisal_table_is_the_replay_per_token(tiny_corpus: Path, tiny_checkpoint: Path) -> None:
    tid, steps = _trajectory(tiny_corpus)
    loaded = load_checkpoint(tiny_checkpoint)
    result = replay_trajectory(loaded, tid, steps, ReplayConfig(max_tokens=700))
    table = result.surprisal_table().to_pandas()
    assert len(table) == result.n_replayed == 700
    assert table["token_index"].tolist() == list(range(700))
    assert table["step"].tolist() == result.rendered.steps[:700].tolist()
    stored = table["surprisal"].to_numpy(dtype=float)
    assert np.isnan(stored[0])  # nothing precedes the first token
    np.testing.assert_allclose(stored[1:], result.surprisal[1:700], rtol=2e-3, atol=2e-3)  # float16
    assert table["top1"].tolist() == result.top1[:700].tolist()
    # the per-step mean the replay stores is the mean over the step's scored tokens of the same values
    for row in result.step_table().to_pylist():
        mine = table[(table["step"] == row["step"]) & table["scored"] & table["surprisal"].notna()]
        if row["surprisal"] is not None and not row["truncated"]:
            assert mine["surprisal"].astype(float).mean() == pytest.approx(row["surprisal"], abs=5e-3)


def test_cached_replay_serves_a_steps_surprisal(tiny_corpus: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    tid, steps = _trajectory(corpus)
    store = open_store(corpus)
    loaded = load_checkpoint(tiny_checkpoint)
    ensure_replayed(store, loaded, tid)
    agent = next(s["step"] for s in steps if s["source"] == "agent" and s["tool_calls"])
    window = step_token_surprisal(store, loaded.checkpoint_id, tid, agent)
    routing = store.query("SELECT DISTINCT token_index FROM routing WHERE trajectory_id = ? AND step = ? "
                          "ORDER BY 1", [tid, agent]).column(0).to_pylist()
    assert window["token_index"].tolist() == routing  # the same tokens the token view draws
    assert window["scored"].any() and not window["scored"].all()  # agent-written and template tokens
    assert window["surprisal"].dtype == np.float64
    # a replay stored before the table existed: the cache still counts it complete, the view gets nothing
    result = replay_trajectory(loaded, tid, steps)
    old = {name: table for name, table in result.tables().items() if name != "token_surprisal"}

    class Older:  # the same replay as an older Horizon Lens wrote it: no token_surprisal table
        trajectory_id = tid

        def tables(self) -> dict:
            return old

        def cache_notes(self) -> dict:
            return result.cache_notes()

    cache = ReplayCache(corpus, loaded.checkpoint_id)
    cache.write([Older()])
    store.refresh()
    assert cache.has(tid, tokens=True) and cache.read_token_surprisal(tid) is None
    assert step_token_surprisal(store, loaded.checkpoint_id, tid, agent).empty


def test_continuation_keeps_reasoning_and_tool_call_apart(tiny_corpus: Path, tiny_checkpoint: Path) -> None:
    tid, steps = _trajectory(tiny_corpus)
    loaded = load_checkpoint(tiny_checkpoint)
    step = next(s for s in steps if s["source"] == "agent" and s["reasoning"] and s["tool_calls"])
    result = continue_from(loaded, steps, step["step"], max_new_tokens=24)
    assert result.recorded_parts == recorded_action(step)
    assert result.recorded_parts.reasoning == step["reasoning"] and len(result.recorded_parts.tool_calls) == 1
    # the prompt opened <think>: the generated text is split as if it started inside it
    assert result.generated_parts == split_action(result.generated, in_think=True)


def test_replay_length_is_what_the_replay_runs(tiny_corpus: Path, tiny_checkpoint: Path) -> None:
    from horizonlens.model.files import context_length, read_config
    from horizonlens.model.replay import replay_length

    tid, steps = _trajectory(tiny_corpus)
    loaded = load_checkpoint(tiny_checkpoint)
    assert context_length(read_config(tiny_checkpoint)) == loaded.max_context
    full = replay_length(loaded.tokenizer, steps, loaded.max_context)
    cut = replay_length(loaded.tokenizer, steps, loaded.max_context, ReplayConfig(max_tokens=300))
    assert cut == 300 < full
    assert full == replay_trajectory(loaded, tid, steps).n_replayed
    assert context_length({"text_config": {"max_position_embeddings": 8}, "max_position_embeddings": 9}) == 8
    assert context_length({"max_position_embeddings": True}) == 4096
