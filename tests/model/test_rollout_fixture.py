"""The rollout fixture: routing recorded token by token with a KV cache, exported as SGLang and vLLM emit it."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from horizonlens.errors import RecordError  # noqa: E402
from horizonlens.model.loader import load_checkpoint  # noqa: E402
from horizonlens.model.replay import ReplayConfig, replay_trajectory  # noqa: E402
from horizonlens.model.rollout import (  # noqa: E402
    decode_sglang,
    record_rollout,
    write_npz,
    write_sglang_jsonl,
    write_vllm_jsonl,
)
from tests.support.model_zoo import build  # noqa: E402

pytestmark = pytest.mark.model
N = 200  # tokens recorded: a decoder runs one forward call per token, so keep it short


@pytest.fixture(scope="module")
def trajectory(tiny_corpus: Path) -> tuple[str, list[dict]]:
    import pyarrow.parquet as pq

    steps = pq.read_table(tiny_corpus / "steps").to_pylist()
    tid = next(s["trajectory_id"] for s in steps if s["trajectory_id"].startswith("engineering"))
    return tid, [s for s in steps if s["trajectory_id"] == tid]


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint: Path):  # noqa: ANN201
    return load_checkpoint(tiny_checkpoint, dtype="float32")


@pytest.fixture(scope="module")
def replay(loaded, trajectory):  # noqa: ANN001, ANN201
    tid, steps = trajectory
    return replay_trajectory(loaded, tid, steps, ReplayConfig(max_tokens=N, chunk_size=64))


def _sets(experts: np.ndarray) -> np.ndarray:
    return np.sort(experts, axis=-1)


def _replay_experts(result) -> np.ndarray:  # noqa: ANN001
    return np.stack([result.routing[layer].experts.numpy() for layer in sorted(result.routing)], axis=1)


def test_fp32_token_by_token_equals_chunked_replay(loaded, replay, trajectory) -> None:  # noqa: ANN001
    tid, steps = trajectory
    rollout = record_rollout(loaded, tid, steps, dtype="float32", config=ReplayConfig(max_tokens=N))
    assert rollout.dtype == "float32" and rollout.checkpoint_id == loaded.checkpoint_id
    np.testing.assert_array_equal(rollout.token_ids, replay.rendered.token_ids[:N])
    assert rollout.moe_layers == sorted(replay.routing) == [0, 1, 2] and rollout.experts.shape == (N, 3, 2)
    np.testing.assert_array_equal(_sets(rollout.experts), _sets(_replay_experts(replay)))  # 100% of top-k sets
    np.testing.assert_allclose(rollout.surprisal[1:], replay.surprisal[1:], atol=1e-3)


def test_bf16_rollout_runs_in_bf16_and_mostly_agrees(loaded, replay, trajectory) -> None:  # noqa: ANN001
    tid, steps = trajectory
    rollout = record_rollout(loaded, tid, steps, config=ReplayConfig(max_tokens=N))  # reloads in bf16
    assert rollout.dtype == "bfloat16" and loaded.dtype == torch.float32  # the shared model was not touched
    differs = (_sets(rollout.experts) != _sets(_replay_experts(replay))).any(-1)  # (N, layers)
    # near-ties may flip in bf16; a large share would mean the recording is misaligned, not imprecise
    assert differs.mean() < 0.25
    assert np.isfinite(rollout.surprisal[1:]).all()


@pytest.fixture(scope="module")
def dense_middle(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer, trajectory):  # noqa: ANN001, ANN201
    """A Qwen2-MoE whose layer 1 is dense (mlp_only_layers): SGLang writes -1 there."""
    path = build("qwen2_moe", tmp_path_factory.mktemp("dense") / "qwen2_moe", tiny_tokenizer)
    tid, steps = trajectory
    return record_rollout(load_checkpoint(path), tid, steps, dtype="float32", config=ReplayConfig(max_tokens=120))


def test_sglang_base64_round_trips_with_minus_one_for_dense_layers(dense_middle, tmp_path: Path) -> None:  # noqa: ANN001
    rec = dense_middle
    assert rec.moe_layers == [0, 2] and rec.num_hidden_layers == 3 and rec.top_k == 2
    path = write_sglang_jsonl([rec, rec], tmp_path / "sglang.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 2 and set(lines[0]) == {"trajectory_id", "token_ids", "meta_info"}
    meta = lines[0]["meta_info"]
    assert meta["routed_experts_start_len"] == 0 and lines[0]["token_ids"] == rec.token_ids.tolist()
    # decoded the way SGLang's R3 docs do it, independently of decode_sglang
    arr = np.frombuffer(base64.b64decode(meta["routed_experts"]), dtype=np.int32).reshape(-1, 3, 2)
    assert arr.shape == (len(rec.token_ids) - 1, 3, 2)  # the last token is never fed, so it has no routing
    assert (arr[:, 1, :] == -1).all() and (arr[:, [0, 2], :] >= 0).all()
    np.testing.assert_array_equal(arr[:, [0, 2], :], rec.experts[:-1])
    np.testing.assert_array_equal(decode_sglang(meta["routed_experts"], 3, 2), arr)


def test_sglang_flat_form_and_start_len(dense_middle, tmp_path: Path) -> None:  # noqa: ANN001
    rec = dense_middle
    path = write_sglang_jsonl([rec], tmp_path / "flat.jsonl", start_len=10, flat=True)
    line = json.loads(path.read_text())
    assert set(line) == {"trajectory_id", "token_ids", "routed_experts", "start_len"} and line["start_len"] == 10
    arr = decode_sglang(line["routed_experts"], 3, 2)
    assert arr.shape[0] == len(rec.token_ids) - 1 - 10  # rows cover [start_len, N - 1)
    np.testing.assert_array_equal(arr[:, [0, 2], :], rec.experts[10:-1])
    assert len(line["token_ids"]) == len(rec.token_ids)  # the token ids stay whole


def test_vllm_nested_lists_have_shape_tokens_moe_layers_top_k(dense_middle, tmp_path: Path) -> None:  # noqa: ANN001
    rec = dense_middle
    line = json.loads(write_vllm_jsonl([rec], tmp_path / "vllm.jsonl").read_text())
    assert set(line) == {"trajectory_id", "token_ids", "routed_experts"}
    nested = line["routed_experts"]
    assert isinstance(nested, list) and isinstance(nested[0], list) and isinstance(nested[0][0][0], int)
    arr = np.asarray(nested)
    assert arr.shape == (len(rec.token_ids) - 1, 2, 2)  # (tokens, MoE layers, top-k): dense layer 1 left out
    np.testing.assert_array_equal(arr, rec.experts[:-1])


def test_npz_holds_token_ids_and_routed_experts(dense_middle, tmp_path: Path) -> None:  # noqa: ANN001
    rec = dense_middle
    path = write_npz(rec, tmp_path / "rollout.npz")
    with np.load(path) as data:
        assert str(data["trajectory_id"]) == rec.trajectory_id and int(data["start_len"]) == 0
        np.testing.assert_array_equal(data["token_ids"], rec.token_ids)
        np.testing.assert_array_equal(data["moe_layers"], [0, 2])
        assert data["routed_experts"].dtype == np.int32
        np.testing.assert_array_equal(data["routed_experts"], rec.experts[:-1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rollout.npz"]  # no temporary files left


def test_malformed_sglang_strings_are_record_errors() -> None:
    with pytest.raises(RecordError, match="base64"):
        decode_sglang("not base64 at all!", 3, 2)
    odd = base64.b64encode(np.arange(7, dtype=np.int32).tobytes()).decode()
    with pytest.raises(RecordError, match="whole number of tokens"):
        decode_sglang(odd, 3, 2)
