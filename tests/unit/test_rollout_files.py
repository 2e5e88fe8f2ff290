"""Reading rollout routing files: formats detected by content, shape checks, dense layers dropped, bad records,
and hostile files (npz bombs, malformed arrays, records with millions of token ids) read within bounds."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from horizonlens.errors import RecordError
from horizonlens.ingest.readers import Raw
from horizonlens.model.rollout_files import RoutingShape, _json_record, read_rollouts
from tests.support.hostile.arrays import (
    A1_EXPERTS,
    A1_LAYERS,
    A1_TOP_K,
    MB,
    good_members,
    long_token_record,
    npy_header,
    npz,
    npz_bombs,
    read_in_child,
)

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
    assert r.rows.shape == (4, 2, 2) and r.rows.dtype == np.int16 and r.start == 0  # the engine's rows, no more
    np.testing.assert_array_equal(r.rows, MOE_ROWS)
    np.testing.assert_array_equal(r.experts_at(np.arange(4)), MOE_ROWS)
    assert r.routed.tolist() == [True, True, True, True, False]


def test_sglang_flat_form_with_start_len(tmp_path: Path) -> None:
    rec = {"trajectory_id": "a", "token_ids": TOKENS, "routed_experts": _b64(_full(MOE_ROWS[2:], -1)), "start_len": 2}
    (r,), problems = read_rollouts([_jsonl(tmp_path / "x.jsonl", rec)], SHAPE)
    assert problems == [] and r.fmt == "sglang"
    assert r.routed.tolist() == [False, False, True, True, False] and r.start == 2
    np.testing.assert_array_equal(r.experts_at(np.array([2, 3])), MOE_ROWS[2:])


def test_vllm_nested_lists_moe_layers_only_and_full_width_with_zero_dense_rows(tmp_path: Path) -> None:
    moe_only = {"trajectory_id": "a", "token_ids": TOKENS, "routed_experts": MOE_ROWS.tolist()}
    full = {"trajectory_id": "b", "token_ids": TOKENS, "routed_experts": _full(MOE_ROWS, 0).tolist()}
    split = {"trajectory_id": "c", "token_ids": TOKENS, "prompt_routed_experts": MOE_ROWS[:3].tolist(),
             "routed_experts": MOE_ROWS[3:].tolist()}
    got, problems = read_rollouts([_jsonl(tmp_path / "v.jsonl", moe_only, full, split)], SHAPE)
    assert problems == [] and [r.fmt for r in got] == ["vllm"] * 3
    for r in got:
        np.testing.assert_array_equal(r.experts_at(np.arange(4)), MOE_ROWS)


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


# --- hostile arrays: bounded before anything is decompressed --------------------------------------------------
A1 = RoutingShape(num_hidden_layers=A1_LAYERS, moe_layers=tuple(range(A1_LAYERS)), num_experts=A1_EXPERTS,
                  top_k=A1_TOP_K)


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return npz_bombs(tmp_path_factory.mktemp("bombs"), size=512 * MB)


def test_an_npz_member_nobody_asks_for_is_never_decompressed(bombs: dict[str, Path]) -> None:
    got = read_in_child(bombs["an unused member"])
    assert got["records"] == 1 and got["problems"] == []
    assert got["peak_mb"] < 64, got  # np.load expanded the 512 MB member


@pytest.mark.parametrize("member", ["routed_experts", "token_ids"])
def test_an_npz_member_declaring_too_much_is_refused_before_it_expands(bombs: dict[str, Path], member: str) -> None:
    got = read_in_child(bombs[member])
    assert got["records"] == 0 and len(got["problems"]) == 1
    assert f"`{member}`" in got["problems"][0] and "expands beyond 256 MB" in got["problems"][0]
    assert got["peak_mb"] < 64, got


def test_a_record_with_millions_of_token_ids_costs_memory_for_its_routing_only(tmp_path: Path) -> None:
    """Routing for one token beside 1M token ids at 40 x top-8: the rows are kept, never spread over every token."""
    got = read_in_child(long_token_record(tmp_path / "long.jsonl", tokens=1_000_000))
    assert got["records"] == 1 and got["problems"] == []
    assert got["peak_mb"] < 150, got  # a dense (tokens, layers, k) int16 array alone is 640 MB


def _npz_of(tmp_path: Path, **changes: object) -> Path:
    members = {k: v for k, v in {**good_members(), **changes}.items() if v is not None}
    return npz(tmp_path / "r.npz", **members)  # type: ignore[arg-type]


SHAPE3 = RoutingShape(num_hidden_layers=3, moe_layers=(0, 1, 2), num_experts=8, top_k=2)
BAD_NPZ = [
    ({"start_len": np.array([0, 1, 2])}, "start_len should hold one value"),
    ({"trajectory_id": np.array(["a", "b"])}, "trajectory_id should hold one value"),
    ({"start_len": np.array(1.5)}, "start_len holds float64 values, not integers"),
    ({"start_len": np.array(9)}, "start_len 9 is outside"),
    ({"trajectory_id": np.array([{"a": 1}], dtype=object)}, "nothing is unpickled"),
    ({"trajectory_id": np.array("")}, "trajectory_id should be 1 to 1000 characters"),
    ({"trajectory_id": np.array(b"\xff\xfe")}, "not UTF-8"),
    ({"trajectory_id": np.array(7)}, "trajectory_id holds int64 values, not text"),
    ({"token_ids": np.arange(12).reshape(3, 4)}, "token_ids has 2 dimensions"),
    ({"token_ids": None}, "no `token_ids` array"),
    ({"routed_experts": np.zeros((5, 3, 2), np.float32)}, "routed_experts holds float32"),
    ({"routed_experts": np.zeros((5, 3, 1), np.int32)}, "top-1 slots"),
    ({"routed_experts": np.zeros((5, 6), np.int32)}, "routed_experts has 2 dimensions"),
    ({"routed_experts": np.zeros((9, 3, 2), np.int32)}, "9 rows but start_len 0 leaves only 6"),
    ({"moe_layers": np.zeros((3, 1), np.int64)}, "moe_layers has 2 dimensions"),
    ({"moe_layers": np.array([0, 1, 5])}, "moe_layers [0, 1, 5] are not the checkpoint's"),
    ({"start_len": b"\x93NUMPY\x01\x00\x10\x00{'descr': 'x'}  \n"}, "not a readable .npy array"),
    ({"start_len": b"\x93NUMPY\x07\x00\x10\x00" + b" " * 16}, "not a readable .npy array"),
    ({"start_len": b"not an array at all"}, "not a readable .npy array"),
    ({"token_ids": npy_header("<i4", (6,)) + b"\x00" * 10}, "the archive says 138 bytes where its header declares 152"),
    ({"token_ids": npy_header("<i4", (6,)) + b"\x00" * 40}, "the archive says 168 bytes where its header declares 152"),
]


@pytest.mark.parametrize(("changes", "reason"), BAD_NPZ, ids=[r for _, r in BAD_NPZ])
def test_malformed_npz_arrays_are_clean_problems(tmp_path: Path, changes: dict, reason: str) -> None:
    bad = _npz_of(tmp_path, **changes)
    good = npz(tmp_path / "good.npz", **good_members())
    got, problems = read_rollouts([bad, good], SHAPE3)
    assert [r.ids["trajectory_id"] for r in got] == ["t-1"]  # the good file beside it still reads
    assert len(problems) == 1 and problems[0].file == str(bad) and reason in problems[0].reason, problems


def test_a_good_npz_in_fortran_order_with_bytes_id_reads(tmp_path: Path) -> None:
    members = good_members()
    rows = np.asfortranarray(members["routed_experts"])
    path = npz(tmp_path / "f.npz", **{**members, "routed_experts": rows, "trajectory_id": np.array(b"t-2")})
    (r,), problems = read_rollouts([path], SHAPE3)
    assert problems == [] and r.ids == {"trajectory_id": "t-2"}
    np.testing.assert_array_equal(r.rows, members["routed_experts"])


def test_an_npz_whose_directory_lies_about_sizes_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A member declared small in the zip directory but large in its header, or the reverse, is refused."""
    import horizonlens.model.rollout_files as rf
    from tests.support.hostile.zipkit import Member, write_zip

    monkeypatch.setattr(rf, "MAX_ROUTING_BYTES", 1000)
    members = good_members(200)
    path = npz(tmp_path / "big.npz", **members)  # routed_experts: 199 x 3 x 2 int32 = 4,776 bytes
    _, problems = read_rollouts([path], SHAPE3)
    assert "`routed_experts` declares 4,776 bytes of data (int32, shape [199, 3, 2]); at most 1,000 bytes" in \
        problems[0].reason
    monkeypatch.undo()
    data = io_npy(members["routed_experts"])
    rest = [Member(f"{k}.npy", io_npy(v)) for k, v in members.items() if k != "routed_experts"]
    for name, member, reason in [
        ("small", Member("routed_experts.npy", data, size=100), "the archive says 100 bytes"),
        ("long", Member("routed_experts.npy", data + b"\0" * 4096, size=len(data)), "expands beyond"),
        ("short", Member("routed_experts.npy", data[:-8], size=len(data)), "damaged member")]:
        liar = write_zip(tmp_path / f"{name}.npz", [*rest, member])
        _, problems = read_rollouts([liar], SHAPE3)
        assert len(problems) == 1 and "`routed_experts`" in problems[0].reason and reason in problems[0].reason, \
            (name, problems)


def io_npy(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_special_and_missing_files_are_problems_and_the_rest_reads(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "fifo.jsonl")
    (tmp_path / "folder.jsonl").mkdir()
    (tmp_path / "zero.jsonl").symlink_to("/dev/zero")
    good = _jsonl(tmp_path / "good.jsonl", {"trajectory_id": "ok", "token_ids": TOKENS,
                                            "routed_experts": MOE_ROWS.tolist()})
    got, problems = read_rollouts([tmp_path / n for n in ("fifo.jsonl", "folder.jsonl", "zero.jsonl", "gone.jsonl")]
                                  + [good], SHAPE)
    assert [r.ids["trajectory_id"] for r in got] == ["ok"]
    reasons = {Path(p.file).name: p.reason for p in problems}
    assert set(reasons) == {"fifo.jsonl", "folder.jsonl", "zero.jsonl", "gone.jsonl"}
    assert "not a regular file" in reasons["fifo.jsonl"] and "cannot be read" in reasons["gone.jsonl"]


def test_ids_are_text_or_whole_numbers(tmp_path: Path) -> None:
    rec = {"trajectory_id": {"nested": "dict"}, "id": 7, "task_id": True, "token_ids": TOKENS,
           "routed_experts": MOE_ROWS.tolist()}
    (r,), _ = read_rollouts([_jsonl(tmp_path / "x.jsonl", rec)], SHAPE)
    assert r.ids == {"id": "7"}  # a dict or a boolean is not an id; it is never stringified into one
    _, problems = read_rollouts([_jsonl(tmp_path / "y.jsonl", {**rec, "trajectory_id": "x" * 1001})], SHAPE)
    assert "longer than 1000 characters" in problems[0].reason


ROLLOUT_KEYS = st.sampled_from(["trajectory_id", "id", "token_ids", "routed_experts", "prompt_routed_experts",
                                "meta_info", "start_len", "routed_experts_start_len", "task_id", "trial"])
ROLLOUT_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**25), 10**25), st.floats(), st.text(max_size=8),
              st.sampled_from(["AAAA", _b64(np.arange(4)), _b64(_full(MOE_ROWS, -1))])),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(ROLLOUT_KEYS | st.text(max_size=6), inner,
                                                                        max_size=5)),
    max_leaves=30)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=ROLLOUT_JSON, base=st.sampled_from([
    {"token_ids": TOKENS, "routed_experts": MOE_ROWS.tolist()},
    {"token_ids": TOKENS, "meta_info": {"routed_experts": _b64(_full(MOE_ROWS, -1))}},
    {"token_ids": TOKENS, "prompt_routed_experts": MOE_ROWS[:2].tolist(), "routed_experts": MOE_ROWS[2:].tolist()}]),
    key=ROLLOUT_KEYS)
def test_any_json_record_is_a_rollout_or_a_record_error(value: object, base: dict, key: str) -> None:
    for record in (value, {**base, key: value}):
        try:
            r = _json_record(Raw(record, "f.jsonl", "line 1"), SHAPE, None)
        except RecordError:
            continue
        assert r.rows.dtype == np.int16 and r.rows.shape[1:] == (2, 2)
        assert 0 <= r.start and r.start + len(r.rows) <= len(r.token_ids)
