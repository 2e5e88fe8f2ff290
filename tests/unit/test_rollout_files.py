"""Reading rollout routing files: formats detected by content, shape checks, dense layers dropped, bad records."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from horizonlens.errors import RecordError
from horizonlens.model.rollout_files import RoutingShape, read_rollouts

# three decoder layers, layer 1 dense (like mlp_only_layers=[1]); 6 experts, top-2
SHAPE = RoutingShape(num_hidden_layers=3, moe_layers=(0, 2), num_experts=6, top_k=2)
TOKENS = [11, 12, 13, 14, 15]
MOE_ROWS = np.array([[[0, 1], [2, 3]], [[1, 2], [3, 4]], [[2, 3], [4, 5]], [[3, 4], [5, 0]]])  # N - 1 rows


def _full(rows: np.ndarray, fill: int) -> np.ndarray:
    out = np.full((rows.shape[0], 3, 2), fill, dtype=np.int32)
    out[:, [0, 2], :] = rows
    return out


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr, dtype="<i4").tobytes()).decode()


def _jsonl(path: Path, *records: object) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_sglang_meta_info_base64_with_minus_one_dense_layer(tmp_path: Path) -> None:
    rec = {"trajectory_id": "a", "token_ids": TOKENS,
           "meta_info": {"routed_experts": _b64(_full(MOE_ROWS, -1)), "routed_experts_start_len": 0}}
    (r,), problems = read_rollouts([_jsonl(tmp_path / "x.out", rec)], SHAPE)  # suffix does not matter
    assert problems == [] and r.fmt == "sglang" and r.ids == {"trajectory_id": "a"}
    assert r.experts.shape == (5, 2, 2) and r.experts.dtype == np.int16
    np.testing.assert_array_equal(r.experts[:4], MOE_ROWS)
    assert (r.experts[4] == -1).all() and r.routed.tolist() == [True, True, True, True, False]


def test_sglang_flat_form_with_start_len(tmp_path: Path) -> None:
    rec = {"trajectory_id": "a", "token_ids": TOKENS, "routed_experts": _b64(_full(MOE_ROWS[2:], -1)), "start_len": 2}
    (r,), problems = read_rollouts([_jsonl(tmp_path / "x.jsonl", rec)], SHAPE)
    assert problems == [] and r.fmt == "sglang"
    assert r.routed.tolist() == [False, False, True, True, False]
    np.testing.assert_array_equal(r.experts[2:4], MOE_ROWS[2:])


def test_vllm_nested_lists_moe_layers_only_and_full_width_with_zero_dense_rows(tmp_path: Path) -> None:
    moe_only = {"trajectory_id": "a", "token_ids": TOKENS, "routed_experts": MOE_ROWS.tolist()}
    full = {"trajectory_id": "b", "token_ids": TOKENS, "routed_experts": _full(MOE_ROWS, 0).tolist()}
    split = {"trajectory_id": "c", "token_ids": TOKENS, "prompt_routed_experts": MOE_ROWS[:3].tolist(),
             "routed_experts": MOE_ROWS[3:].tolist()}
    got, problems = read_rollouts([_jsonl(tmp_path / "v.jsonl", moe_only, full, split)], SHAPE)
    assert problems == [] and [r.fmt for r in got] == ["vllm"] * 3
    for r in got:
        np.testing.assert_array_equal(r.experts[:4], MOE_ROWS)


def test_npz_and_json_array_and_forced_format(tmp_path: Path) -> None:
    np.savez(tmp_path / "r.npz", trajectory_id=np.array("z"), token_ids=np.array(TOKENS),
             routed_experts=MOE_ROWS.astype(np.int32), moe_layers=np.array([0, 2]), start_len=np.array(0))
    arr = tmp_path / "a.json"
    arr.write_text(json.dumps([{"trajectory_id": "y", "token_ids": TOKENS, "routed_experts": MOE_ROWS.tolist()}]))
    got, problems = read_rollouts([tmp_path / "r.npz", arr], SHAPE)
    assert problems == [] and [(r.fmt, r.ids["trajectory_id"]) for r in got] == [("npz", "z"), ("vllm", "y")]
    _, problems = read_rollouts([arr], SHAPE, fmt="sglang")
    assert len(problems) == 1 and "--format sglang" in problems[0].reason
    with pytest.raises(RecordError, match="unknown rollout format"):
        read_rollouts([arr], SHAPE, fmt="csv")


BAD = [
    ({"token_ids": TOKENS, "routed_experts": MOE_ROWS[:, :, :1].tolist()}, "top-1 slots"),
    ({"token_ids": TOKENS, "routed_experts": np.zeros((4, 4, 2), int).tolist()}, "4 layers; expected 2 or 3"),
    ({"token_ids": TOKENS, "routed_experts": (MOE_ROWS + 3).tolist()}, "outside [0, 6)"),
    ({"token_ids": TOKENS, "routed_experts": np.concatenate([MOE_ROWS] * 2).tolist()}, "rows but start_len"),
    ({"token_ids": TOKENS, "routed_experts": [[[1, 1], [2, 3]]]}, "appears twice"),
    ({"token_ids": TOKENS, "routed_experts": [[[1, -1], [2, 3]]]}, "some top-k slots are -1"),
    ({"token_ids": TOKENS, "routed_experts": _full(MOE_ROWS, 4).tolist()}, "layer 1 is dense"),
    ({"token_ids": TOKENS, "routed_experts": "%%%"}, "base64"),
    ({"token_ids": TOKENS, "routed_experts": _b64(np.arange(5))}, "whole number of tokens"),
    ({"token_ids": [1, -2], "routed_experts": []}, "negative"),
    ({"token_ids": "abc", "routed_experts": []}, "flat list of integers"),
    ({"routed_experts": []}, "no token_ids"),
    ({"token_ids": TOKENS, "routed_experts": [[[1, 2]], [[1, 2], [3, 4]]]}, "regular"),
    ({"token_ids": TOKENS, "routed_experts": [], "start_len": 9}, "start_len 9 is outside"),
    ({"token_ids": TOKENS, "routed_experts": None, "prompt_routed_experts": None}, "not a rollout record"),
    ({"token_ids": TOKENS, "text": "no routing here"}, "not a rollout record"),
]


@pytest.mark.parametrize(("record", "reason"), BAD, ids=[r for _, r in BAD])
def test_bad_records_are_reported_and_the_rest_imports(tmp_path: Path, record: dict, reason: str) -> None:
    good = {"trajectory_id": "ok", "token_ids": TOKENS, "routed_experts": MOE_ROWS.tolist()}
    path = _jsonl(tmp_path / "mixed.jsonl", good, {"trajectory_id": "bad", **record}, good)
    got, problems = read_rollouts([path], SHAPE)
    assert len(got) == 2 and len(problems) == 1
    assert problems[0].file == str(path) and problems[0].where == "line 2"
    assert reason in problems[0].reason


def test_unreadable_files_are_problems(tmp_path: Path) -> None:
    (tmp_path / "broken.jsonl").write_text('{"token_ids": [1, 2]\n')
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "fake.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.savez(tmp_path / "pickled.npz", token_ids=np.array(TOKENS), routed_experts=np.array([object()]))
    got, problems = read_rollouts([tmp_path / n for n in ("broken.jsonl", "empty.jsonl", "fake.npz",
                                                            "pickled.npz", "missing.jsonl")], SHAPE)
    assert got == []
    reasons = {Path(p.file).name: p.reason for p in problems}
    assert set(reasons) == {"broken.jsonl", "empty.jsonl", "fake.npz", "pickled.npz", "missing.jsonl"}
    assert "not valid JSON" in reasons["broken.jsonl"] and "empty" in reasons["empty.jsonl"]
    assert "plain arrays" in reasons["fake.npz"] and "plain arrays" in reasons["pickled.npz"]
