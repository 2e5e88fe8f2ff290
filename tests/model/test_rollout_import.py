"""`horizonlens routing import`: a bf16 token-by-token rollout of the tiny checkpoint, exported as SGLang (base64)
and vLLM (nested lists), imported onto the right trajectories, aligned and compared with the fp32 chunked replay."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from horizonlens.cli import app  # noqa: E402
from horizonlens.cli.routing_cmds import import_rollouts  # noqa: E402
from horizonlens.metrics import rollout as metrics  # noqa: E402
from horizonlens.model.loader import load_checkpoint  # noqa: E402
from horizonlens.model.replay import ReplayConfig, replay_trajectory  # noqa: E402
from horizonlens.model.rollout import RolloutRecord, record_rollout, sglang_record, vllm_record  # noqa: E402
from horizonlens.query.store import open_store  # noqa: E402
from horizonlens.replays.cache import ReplayCache  # noqa: E402

pytestmark = pytest.mark.model
runner = CliRunner()
N = 160  # tokens recorded token by token (one forward call each): short, so the test stays quick
# (token, MoE column) cells whose rollout experts the test replaces: real flips are rare on 160 tokens of a tiny
# model, and the set-mismatch rates must be checked on cells that do differ
PLANTED = [(3, 0), (40, 1), (41, 1), (90, 2), (120, 0), (121, 2)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: Path) -> Path:
    return Path(shutil.copytree(tiny_corpus, tmp_path_factory.mktemp("rollout") / "corpus"))


@pytest.fixture(scope="module")
def picked(corpus: Path) -> list[tuple[str, list[dict]]]:
    """Two trajectories with failed checks, with their steps."""
    store = open_store(corpus)
    ids = store.query("SELECT trajectory_id FROM trajectories WHERE n_failed_checks > 0 ORDER BY n_tokens "
                      "LIMIT 2").column(0).to_pylist()
    return [(tid, store.steps(tid).to_pylist()) for tid in ids]


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint: Path):  # noqa: ANN201
    return load_checkpoint(tiny_checkpoint, dtype="bfloat16")


@pytest.fixture(scope="module")
def records(loaded, picked) -> list[RolloutRecord]:  # noqa: ANN001
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one-token forwards: extra threads only spin (10x slower on a busy machine)
    try:
        return [record_rollout(loaded, tid, steps, config=ReplayConfig(max_tokens=N)) for tid, steps in picked]
    finally:
        torch.set_num_threads(threads)


def _planted(rec: RolloutRecord) -> RolloutRecord:
    """The record with PLANTED cells routed to other experts (still k distinct ids below E)."""
    experts = rec.experts.copy()
    for t, col in PLANTED:
        experts[t, col] = (experts[t, col] + 7) % 8  # the tiny checkpoint has 8 experts
    return RolloutRecord(rec.trajectory_id, rec.checkpoint_id, rec.dtype, rec.token_ids, experts, rec.moe_layers,
                         rec.num_hidden_layers, rec.surprisal)


@pytest.fixture(scope="module")
def imported(corpus: Path, tiny_checkpoint: Path, records: list[RolloutRecord], tmp_path_factory) -> dict:  # noqa: ANN001
    """SGLang base64 (meta_info form) for the first trajectory, vLLM nested lists for the second, one import."""
    work = tmp_path_factory.mktemp("files")
    sglang, vllm = work / "rollout-sglang.jsonl", work / "rollout-vllm.json"
    first = sglang_record(_planted(records[0]))
    first.pop("trajectory_id")  # SGLang knows nothing of corpus ids; the task id and trial map to the sample's id
    task, trial = records[0].trajectory_id.rsplit("-t", 1)
    sglang.write_text(json.dumps({"task_id": task, "trial": int(trial), **first}) + "\n")
    vllm.write_text(json.dumps([vllm_record(_planted(records[1]))]))  # a JSON array, and a suffix that says nothing
    result = runner.invoke(app, ["routing", "import", str(sglang), str(vllm), "--into", str(corpus),
                                 "--checkpoint", str(tiny_checkpoint)])
    assert result.exit_code == 0, result.output
    return {"output": result.output, "files": (sglang, vllm)}


def test_both_formats_land_on_their_trajectories(corpus: Path, imported: dict, records, loaded) -> None:  # noqa: ANN001
    assert "2 of 2 rollout records imported, 2 compared" in imported["output"]
    store = open_store(corpus)
    rows = store.query("SELECT trajectory_id, count(DISTINCT token_index) AS tokens, count(*) AS cells "
                       "FROM routing_rollout WHERE checkpoint_id = ? GROUP BY 1 ORDER BY 1",
                       [loaded.checkpoint_id]).to_pylist()
    assert [r["trajectory_id"] for r in rows] == sorted(r.trajectory_id for r in records)
    # the last token has no routing (it was sampled, never fed); every other token is on the replay's positions
    assert all(r["tokens"] == N - 1 and r["cells"] == (N - 1) * 3 for r in rows)
    for rec in records:
        stored = store.query("SELECT token_index, layer, expert_set, top1_expert FROM routing_rollout "
                             "WHERE trajectory_id = ? ORDER BY token_index, layer", [rec.trajectory_id]).to_pylist()
        want = _planted(rec).experts[:N - 1]
        got = np.array([r["expert_set"] for r in stored]).reshape(N - 1, 3, 2)
        np.testing.assert_array_equal(got, np.sort(want, axis=-1))
        np.testing.assert_array_equal(np.array([r["top1_expert"] for r in stored]).reshape(N - 1, 3), want[..., 0])
        assert [r["token_index"] for r in stored[::3]] == list(range(N - 1))


def test_per_layer_set_mismatch_equals_numpy_on_the_raw_arrays(corpus: Path, imported: dict, records, picked,
                                                               tiny_checkpoint: Path) -> None:  # noqa: ANN001
    fp32 = load_checkpoint(tiny_checkpoint, dtype="float32")
    rollout_sets, replay_sets = [], []
    for rec, (tid, steps) in zip(records, picked, strict=True):
        replay = replay_trajectory(fp32, tid, steps, ReplayConfig(chunk_size=512))  # independent of the cache
        ref = np.stack([replay.routing[layer].experts.numpy() for layer in sorted(replay.routing)], axis=1)
        rollout_sets.append(np.sort(_planted(rec).experts[:N - 1], axis=-1))
        replay_sets.append(np.sort(ref[:N - 1], axis=-1))
    differs = (np.concatenate(rollout_sets) != np.concatenate(replay_sets)).any(-1)  # (tokens, layers)
    assert differs.sum() >= len(PLANTED)  # the planted flips at least
    store = open_store(corpus)
    layers = metrics.layer_mismatch(store, fp32.checkpoint_id)
    assert layers["layer"].tolist() == [0, 1, 2]
    assert layers["tokens"].tolist() == [2 * (N - 1)] * 3
    np.testing.assert_allclose(layers["set_mismatch"].to_numpy(), differs.mean(axis=0))
    head = metrics.summary(store, fp32.checkpoint_id)
    assert head["tokens_compared"] == 2 * (N - 1)
    assert head["token_any_layer_mismatch"] == pytest.approx(differs.any(axis=1).mean())


def test_reimport_in_small_batches_replaces_rows_once(corpus: Path, imported: dict, records, tiny_checkpoint: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Both rollouts again, one batch (file) each: the shared file of the first import is rewritten, not doubled."""
    from horizonlens.cli import routing_cmds

    monkeypatch.setattr(routing_cmds, "BATCH_ROWS", 1)
    store = open_store(corpus)
    report = import_rollouts(store, tiny_checkpoint, list(imported["files"]), replay=False)
    assert sorted(report.imported) == sorted(r.trajectory_id for r in records)
    store.refresh()
    rows = store.query("SELECT trajectory_id, count(*) AS n FROM routing_rollout GROUP BY 1 ORDER BY 1").to_pylist()
    assert [r["n"] for r in rows] == [(N - 1) * 3, (N - 1) * 3]
    compared = store.query("SELECT trajectory_id, sum(tokens) AS n FROM rollout_compare_steps GROUP BY 1").to_pylist()
    assert sorted(r["n"] for r in compared) == [N - 1, N - 1]
    cache = ReplayCache(corpus, store.replay_checkpoints[0])
    assert len(cache.snapshot().table("rollout_tokens")) == 2  # one file per batch, the old shared one gone


def test_alignment_with_inserted_and_deleted_tokens(corpus: Path, imported: dict, records,
                                                    tiny_checkpoint: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """An engine whose template added 5 tokens up front and dropped 10 in the middle: only shared tokens count."""
    rec = records[0]
    ids = rec.token_ids.tolist()
    rows = rec.experts[:N - 1].tolist()  # row i belongs to token i
    system = [3, 4, 5, 6, 7]
    new_ids = system + ids[:50] + ids[60:]
    new_rows = [[[0, 1]] * 3] * 5 + rows[:50] + rows[60:]  # the inserted tokens got some routing too
    path = tmp_path / "edited.jsonl"
    path.write_text(json.dumps({"trajectory_id": rec.trajectory_id, "token_ids": new_ids,
                                "routed_experts": new_rows}) + "\n")
    store = open_store(corpus)
    report = import_rollouts(store, tiny_checkpoint, [path])
    stats = report.alignment[rec.trajectory_id]
    assert stats["identical"] is False and stats["routed"] == len(new_ids) - 1
    assert stats["aligned"] == N - 1 - 10  # every original routed token but the 10 deleted ones
    assert stats["aligned_share"] == pytest.approx((N - 11) / (len(new_ids) - 1))
    store.refresh()
    positions = store.query("SELECT DISTINCT token_index FROM routing_rollout WHERE trajectory_id = ? ORDER BY 1",
                            [rec.trajectory_id]).column(0).to_pylist()
    assert positions == [*range(50), *range(60, N - 1)]  # on the replay's positions, the deleted run left out
    compared = store.scalar("SELECT sum(tokens) FROM rollout_compare_steps WHERE trajectory_id = ?",
                            [rec.trajectory_id])
    assert compared == N - 11


def test_bad_records_are_reported_and_nothing_is_written_half(corpus: Path, imported: dict, tiny_checkpoint: Path,
                                                              tmp_path: Path) -> None:
    cache = ReplayCache(corpus, open_store(corpus).replay_checkpoints[0])
    before = cache.snapshot().version
    bad = tmp_path / "bad.jsonl"
    lines = [{"trajectory_id": "nope", "token_ids": [1, 2, 3], "routed_experts": [[[0, 1]] * 3]},
             {"trajectory_id": "x", "token_ids": [1, 2], "routed_experts": [[[0, 1, 2]] * 3]}]
    bad.write_text("".join(json.dumps(line) + "\n" for line in lines) + "not json\n")
    result = runner.invoke(app, ["routing", "import", str(bad), "--into", str(corpus), "--checkpoint",
                                 str(tiny_checkpoint)])
    assert result.exit_code == 1
    assert f"{bad}: line 1: no trajectory in the corpus matches trajectory_id='nope'" in result.output
    assert f"{bad}: line 2: routed_experts has top-3 slots" in result.output
    assert f"{bad}: line 3: not valid JSON" in result.output
    assert cache.snapshot().version == before  # nothing was committed


def test_replaying_again_keeps_the_rollout_and_compare_restores_the_comparison(
        corpus: Path, imported: dict, records, tiny_checkpoint: Path) -> None:  # noqa: ANN001
    store = open_store(corpus)
    ckpt = store.replay_checkpoints[0]
    tid = records[1].trajectory_id
    before = metrics.step_mismatch(store, ckpt, tid)
    from horizonlens.model.batch import ensure_replayed

    ensure_replayed(store, load_checkpoint(tiny_checkpoint), tid, force=True)
    store.refresh()
    assert tid not in metrics.compared_trajectories(store, ckpt)  # made against the old replay: dropped
    assert store.scalar("SELECT count(*) FROM routing_rollout WHERE trajectory_id = ?", [tid]) == (N - 1) * 3
    result = runner.invoke(app, ["routing", "compare", str(corpus), "--checkpoint", str(tiny_checkpoint)])
    assert result.exit_code == 0 and "compared" in result.output, result.output
    store.refresh()
    after = metrics.step_mismatch(store, ckpt, tid)
    np.testing.assert_allclose(after.drop(columns="near_tie_share").to_numpy(dtype=float),
                               before.drop(columns="near_tie_share").to_numpy(dtype=float))


def test_metrics_json_has_rollout_routing(corpus: Path, imported: dict, tiny_checkpoint: Path) -> None:
    result = runner.invoke(app, ["metrics", str(corpus), "--checkpoint", str(tiny_checkpoint), "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.output)["rollout_routing"]
    assert {"tokens_compared", "token_any_layer_mismatch", "per_layer", "by_position", "around_failures"} <= set(r)
    assert [x["layer"] for x in r["per_layer"]] == [0, 1, 2]
    assert set(r["per_layer"][0]) >= {"layer", "set_mismatch", "top1_mismatch", "near_tie_share"}
    assert set(r["around_failures"]) >= {"before_failed", "elsewhere", "ratio", "profile", "window"}
    assert sum(b["tokens"] for b in r["by_position"]) == r["tokens_compared"]


def test_import_without_a_replay_then_compare(corpus: Path, imported: dict, records, tiny_checkpoint: Path) -> None:  # noqa: ANN001
    """--no-replay: the rollout is aligned with the rendering a replay will use, stored, and compared later."""
    from horizonlens.cli.routing_cmds import compare_stored
    from horizonlens.model.batch import ensure_replayed

    store = open_store(corpus)
    ckpt = store.replay_checkpoints[0]
    tid = records[1].trajectory_id
    ReplayCache(corpus, ckpt).drop([tid])  # no replay, no rollout: as if never seen
    store.refresh()
    report = import_rollouts(store, tiny_checkpoint, [imported["files"][1]], replay=False)
    assert report.imported == [tid] and report.compared == [] and report.replayed == []
    assert report.alignment[tid]["aligned"] == N - 1
    positions = store.query("SELECT DISTINCT token_index FROM routing_rollout WHERE trajectory_id = ? ORDER BY 1",
                            [tid]).column(0).to_pylist()
    assert positions == list(range(N - 1))
    assert tid not in metrics.compared_trajectories(store, ckpt)
    ensure_replayed(store, load_checkpoint(tiny_checkpoint), tid)
    assert compare_stored(store, ckpt, [tid]) == [tid]
    assert store.scalar("SELECT sum(tokens) FROM rollout_compare_steps WHERE trajectory_id = ?", [tid]) == N - 1
