"""The routing storage format: quantization against hand-computed cases, and round trips through files and views."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from horizonlens.replays import codec as rf


def test_weight_codes_by_hand() -> None:
    # scale 0.8, 4 bits: w / 0.8 * 15 = [15, 7.5, 0.9375, 0] -> [15, 8, 1, 0] (rint: 7.5 goes to the even 8)
    codes = rf.quantize_weights(np.array([0.8, 0.4, 0.05, 0.0]), 0.8)
    assert codes.tolist() == [15, 8, 1, 0]
    back = rf.dequantize_weights(codes, 0.8)
    assert back == pytest.approx([0.8, 8 * 0.8 / 15, 0.8 / 15, 0.0])
    # 0.4 sits exactly half a step from two codes: the error is the documented bound, scale / (2 * 15)
    assert abs(back[1] - 0.4) == pytest.approx(0.8 / 30)
    assert rf.quantize_weights(np.array([1.2, -0.1]), 0.8).tolist() == [15, 0]  # clipped into range
    assert rf.weight_scale(np.array([[0.25, 0.5], [0.1, 0.2]])) == 0.5
    assert rf.weight_scale(np.zeros((0, 2))) == 1.0


def test_margin_codes_by_hand() -> None:
    margins = np.array([0.0, 2.0**-25, 2.0**-24, 1.0, 3.0, np.inf, np.nan, -1.0])
    codes = rf.encode_margin(margins)
    # code = 1 + floor(2 * (log2 m + 24)): m = 1 -> 49; m = 3 -> 1 + floor(2 * 25.585) = 52
    assert codes.tolist() == [0, 0, 1, 49, 52, 255, 0, 0]
    back = rf.decode_margin(codes)
    assert back[0] == 0.0 and back[3] == pytest.approx(2**0.25) and back[2] == pytest.approx(2.0 ** (0.25 - 24))
    assert back[4] == pytest.approx(2 ** (51.5 / 2 - 24))
    ratio = back[[2, 3, 4]] / margins[[2, 3, 4]]
    assert (ratio >= 2**-0.25 - 1e-12).all() and (ratio <= 2**0.25 + 1e-12).all()


def test_entropy_codes_by_hand() -> None:
    top = math.log(256)
    codes = rf.quantize_entropy(np.array([0.0, top, top / 2, 9.0]), 256)
    assert codes.tolist() == [0, 63, 32, 63]  # 31.5 rounds to the even 32; above ln E is clipped
    back = rf.dequantize_entropy(codes, 256)
    assert abs(back[2] - top / 2) == pytest.approx(top / 126)  # exactly the bound ln E / (2 * 63)


def test_expert_sets_by_hand() -> None:
    gaps, top1, order = rf.encode_sets(np.array([[5, 2, 9]]), np.array([[0.5, 0.3, 0.2]]), 16)
    assert gaps.tolist() == [[2, 2, 3]] and gaps.dtype == np.uint8  # 2; 5 - 2 - 1; 9 - 5 - 1
    assert top1.tolist() == [1]  # expert 5 (the largest weight) is second in the sorted set
    assert order.tolist() == [[1, 0, 2]]
    assert rf.decode_sets(gaps).tolist() == [[2, 5, 9]]
    assert rf.expert_type(256) == pa.uint8() and rf.expert_type(257) == pa.uint16()
    wide, _, _ = rf.encode_sets(np.array([[0, 299]]), None, 300)
    assert wide.dtype == np.uint16 and wide.tolist() == [[0, 298]]


def _random_routing(rng: np.random.Generator, n: int, layers: int, k: int, experts: int) -> dict[str, np.ndarray]:
    ids = np.argsort(rng.random((n, layers, experts)), axis=-1)[..., :k]  # distinct experts per (token, layer)
    weights = rng.dirichlet(np.ones(k), size=(n, layers)) * 2.5  # DeepSeek-style scaled weights
    weights[0, 0] = 1.0 / k * 2.5  # an exact tie: the top-1 is the first of the router's list
    return {"experts": ids, "weights": weights, "entropy": rng.uniform(0, math.log(experts), (n, layers)),
            "margin": rng.exponential(0.05, (n, layers)), "steps": np.repeat(np.arange(n // 10 + 1), 10)[:n],
            "segments": rng.choice(np.array(["reasoning", "tool_call", "observation"]), n),
            "token_ids": rng.integers(0, 50_000, n)}


@pytest.mark.parametrize(("k", "experts"), [(2, 16), (8, 256), (4, 300)])
def test_token_tier_round_trip(tmp_path: Path, k: int, experts: int) -> None:
    rng = np.random.default_rng(k)
    r = _random_routing(rng, 200, 3, k, experts)
    layers = [3, 4, 5]
    table = rf.token_table("T", layers, r["experts"], r["weights"], r["entropy"], r["margin"], experts,
                           steps=r["steps"], segments=r["segments"], token_ids=r["token_ids"])
    assert table.num_rows == 600 and table.schema.field("experts").type.value_type == rf.expert_type(experts)
    decoded = rf.decode_token_table(table)
    got = np.array(decoded["experts"].to_pylist()).reshape(200, 3, k)
    assert (np.sort(got, -1) == np.sort(r["experts"], -1)).all()  # the sets are exact
    top1 = np.take_along_axis(r["experts"], np.argmax(r["weights"], -1)[..., None], -1)[..., 0]
    assert (got[..., 0] == top1).all() and decoded["top1_expert"].to_pylist() == top1.reshape(-1).tolist()
    scale = r["weights"].max()
    w_got = np.array(decoded["weights"].to_pylist()).reshape(200, 3, k)
    by_id_got = np.take_along_axis(w_got, np.argsort(got, -1), -1)
    by_id_true = np.take_along_axis(r["weights"], np.argsort(r["experts"], -1), -1)
    assert np.abs(by_id_got - by_id_true).max() <= scale / (2 * rf.WEIGHT_LEVELS) + 1e-6
    assert (np.diff(w_got[..., 1:], axis=-1) <= 1e-7).all()  # after the top-1: decreasing weight
    h = np.array(decoded["entropy"].to_pylist()).reshape(200, 3)
    assert np.abs(h - r["entropy"]).max() <= math.log(experts) / (2 * rf.ENTROPY_LEVELS) + 1e-6
    m = np.array(decoded["margin"].to_pylist()).reshape(200, 3)
    assert (np.abs(np.log2(m / r["margin"])) <= 0.25 + 1e-6).all()
    assert decoded["token_index"].to_pylist()[:4] == [0, 0, 0, 1] and decoded["layer"].to_pylist()[:4] == [3, 4, 5, 3]

    # the SQL view decodes what numpy decodes, from the file as the cache writes it
    path = tmp_path / "tokens.parquet"
    pq.write_table(table, path, **rf.write_options("routing_tokens"))
    view = duckdb.sql(rf.token_view_sql(f"read_parquet('{path}')", k)).to_arrow_table()
    for column in rf.TOKEN_VIEW_COLUMNS:
        a, b = view[column].to_pylist(), decoded[column].to_pylist()
        if column in ("weights", "entropy", "margin"):
            np.testing.assert_allclose(np.array(a, float), np.array(b, float), rtol=1e-6, atol=1e-7)
        else:
            assert a == b, column


def test_rollout_rows_have_no_weights(tmp_path: Path) -> None:
    experts = np.array([[[3, 1]], [[0, 2]]])
    table = rf.token_table("T", [0], experts, None, None, None, 4, steps=np.array([0, 0]),
                           segments=np.array(["user", "user"]), token_ids=np.array([7, 8]), source="rollout")
    decoded = rf.decode_token_table(table)
    assert decoded["experts"].to_pylist() == [[3, 1], [0, 2]]  # no weights: the engine's first choice is top-1
    assert decoded["weights"].to_pylist() == [None, None] and decoded["margin"].to_pylist() == [None, None]
    assert set(decoded["source"].to_pylist()) == {"rollout"}
    path = tmp_path / "rollout.parquet"
    pq.write_table(table, path, **rf.write_options("rollout_tokens"))
    view = duckdb.sql(rf.token_view_sql(f"read_parquet('{path}')", 2)).to_arrow_table()
    assert view["experts"].to_pylist() == [[3, 1], [0, 2]] and view["weights"].to_pylist() == [None, None]


def test_step_tier_equals_a_direct_count(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    r = _random_routing(rng, 300, 2, 4, 64)
    tables = rf.aggregate_tables("T", [1, 2], r["experts"], r["weights"], 64, steps=r["steps"],
                                 segments=r["segments"])
    steps = tables["routing_steps"].to_pandas()
    scale = r["weights"].max()
    for (step, layer, expert), row in steps.set_index(["step", "layer", "expert"]).iterrows():
        tokens = r["steps"] == step
        hit = r["experts"][tokens, layer - 1] == expert  # (tokens of the step, k)
        assert row["tokens"] == hit.sum()
        exact = r["weights"][tokens, layer - 1][hit].mean()
        assert abs(row["weight"] / rf.STEP_WEIGHT_LEVELS * scale - exact) <= scale / (2 * rf.STEP_WEIGHT_LEVELS) + 1e-9
    assert steps["tokens"].sum() == 300 * 2 * 4  # every assignment is counted once
    segs = tables["routing_segments"].to_pandas()
    assert set(segs["segment"]) == {"reasoning", "tool_call", "observation"} and segs["tokens"].sum() == 2400
    path = tmp_path / "steps.parquet"
    pq.write_table(tables["routing_steps"], path, **rf.write_options("routing_steps"))
    view = duckdb.sql(rf.aggregate_view_sql(f"read_parquet('{path}')", "step")).to_df()
    np.testing.assert_allclose(view["mean_weight"], steps["weight"] * scale / rf.STEP_WEIGHT_LEVELS, rtol=1e-6)


def test_compact_tiers_are_smaller_than_format_1() -> None:
    """On uniform random routing (the worst case for compression) at top-8 of 256, tiers vs format 1."""
    import io

    rng = np.random.default_rng(1)
    n, layers = 600, 10
    r = _random_routing(rng, n, layers, 8, 256)
    tok = rf.token_table("T", list(range(layers)), r["experts"], r["weights"], r["entropy"], r["margin"], 256,
                         steps=r["steps"], segments=r["segments"], token_ids=r["token_ids"])

    def size(table: pa.Table, **options: object) -> int:
        buf = io.BytesIO()
        pq.write_table(table, buf, **options)
        return buf.tell()

    compact = size(tok, **rf.write_options("routing_tokens"))
    flat = r["experts"].reshape(-1, 8)
    offsets = pa.array(np.arange(0, flat.size + 1, 8, dtype=np.int32))
    format1 = size(pa.table({"experts": pa.ListArray.from_arrays(offsets, pa.array(flat.reshape(-1), pa.int16())),
                             "weights": pa.ListArray.from_arrays(offsets, pa.array(
                                 r["weights"].reshape(-1).astype(np.float16), pa.float16()))}), compression="zstd")
    assert compact < 0.6 * format1  # with every key column, against format 1's experts and weights alone
