"""The replay cache inside the corpus: written atomically, queried by DuckDB, recomputed when corrupt."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from horizonlens.cli import app  # noqa: E402
from horizonlens.model.batch import ensure_replayed  # noqa: E402
from horizonlens.model.loader import load_checkpoint  # noqa: E402
from horizonlens.model.replay import ReplayConfig  # noqa: E402
from horizonlens.query.store import open_store  # noqa: E402
from horizonlens.replays.cache import ReplayCache, list_checkpoints  # noqa: E402

pytestmark = pytest.mark.model


@pytest.fixture()
def corpus(tmp_path: Path, tiny_corpus: Path) -> Path:
    return Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))


def _short_ids(store, n: int) -> list[str]:
    return store.list_trajectories(sort="n_tokens", limit=n).rows["trajectory_id"].to_pylist()


def test_replay_is_cached_and_queryable(corpus: Path, tiny_checkpoint: Path) -> None:
    store = open_store(corpus)
    loaded = load_checkpoint(tiny_checkpoint)
    tids = _short_ids(store, 2)
    assert ensure_replayed(store, loaded, tids[0], ReplayConfig(chunk_size=128)) is True
    assert ensure_replayed(store, loaded, tids[0]) is False  # cached
    ensure_replayed(store, loaded, tids[1])
    assert list_checkpoints(corpus) == [loaded.checkpoint_id]
    per_step = store.query("SELECT trajectory_id, count(*) AS n, any_value(checkpoint_id) AS ckpt FROM replay_steps "
                           "GROUP BY 1 ORDER BY 1").to_pylist()
    assert [r["trajectory_id"] for r in per_step] == sorted(tids)
    assert all(r["ckpt"] == loaded.checkpoint_id for r in per_step)
    n_steps = store.trajectory(tids[0])["n_steps"]
    assert per_step[sorted(tids).index(tids[0])]["n"] == n_steps
    load = store.query("SELECT layer, e, count(*) AS n FROM (SELECT layer, unnest(experts) AS e FROM routing) "
                       "GROUP BY ALL").to_pylist()
    assert {r["layer"] for r in load} == {0, 1, 2} and sum(r["n"] for r in load) > 0
    # reopening the store sees the cache too
    assert open_store(corpus).replay_checkpoints == [loaded.checkpoint_id]


def test_corrupt_cache_file_is_recomputed(corpus: Path, tiny_checkpoint: Path) -> None:
    store = open_store(corpus)
    loaded = load_checkpoint(tiny_checkpoint)
    tid = _short_ids(store, 1)[0]
    ensure_replayed(store, loaded, tid)
    cache = ReplayCache(corpus, loaded.checkpoint_id)
    entries = cache.entries(tid)
    steps_path, routing_path = (corpus / "replays" / loaded.checkpoint_id / entries[t][0].path
                                for t in ("steps", "routing_tokens"))
    good = cache.read_steps(tid)
    routing_path.write_bytes(routing_path.read_bytes()[:100])  # truncated, as by a full disk
    assert not cache.has(tid) and steps_path.exists()  # asking deletes nothing
    reopened = open_store(corpus)  # the damaged file never stops the corpus from opening
    assert any("routing" in p for p in reopened.problems)
    assert ensure_replayed(store, loaded, tid) is True
    assert cache.read_steps(tid).equals(good)
    assert "n_replayed" in cache.read_notes(tid)


def test_cli_replay_is_resumable(corpus: Path, tiny_checkpoint: Path) -> None:
    runner = CliRunner()
    args = ["replay", str(corpus), "--checkpoint", str(tiny_checkpoint), "--limit", "3", "--chunk-size", "256"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "replayed 3, already cached 0" in first.output
    second = runner.invoke(app, args)
    assert "replayed 0, already cached 3" in second.output
    bad = runner.invoke(app, ["replay", str(corpus), "--checkpoint", str(corpus)])
    assert bad.exit_code == 1 and "config.json" in bad.output
    missing = runner.invoke(app, ["replay", str(corpus), "--checkpoint", str(tiny_checkpoint), "-t", "no-such-id"])
    assert missing.exit_code == 1 and "no such trajectory" in missing.output
