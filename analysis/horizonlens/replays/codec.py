"""The routing storage format: two tiers, their quantization, and the SQL that decodes them.

Routing is what a MoE router decided for every (token, MoE layer). It is stored in two tiers: the step tier
(`routing_steps`, `routing_segments`: per step or segment, layer and expert, the tokens routed and their mean
gate weight), written on every replay, and the optional token tier (`routing_tokens`, and `rollout_tokens` for
an inference engine's routing): per (token, layer) the expert set as gaps between sorted ids, the top-1's
position, quantized weights, the router's margin and entropy. docs/corpus-format.md ("The replay cache") is the
specification: every column, each code and its largest error, and the bytes each tier takes.

Each encoder here has its inverse twice, as numpy (`decode_*`, for one trajectory in Python) and as the SQL of
the views (`*_view_sql`); tests/unit/test_routing_format.py holds them equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from horizonlens.corpus.schema import ROUTING_SEGMENTS, ROUTING_STEPS, ROUTING_TOKENS

FORMAT_VERSION = 2  # the two tiers; `horizonlens migrate` upgrades format 1 (replays/migrate.py)
WEIGHT_BITS = 4
WEIGHT_LEVELS = 2**WEIGHT_BITS - 1
STEP_WEIGHT_LEVELS = 63  # the step tier's mean weight: a 6-bit code on the same scale
ENTROPY_BITS = 6
ENTROPY_LEVELS = 2**ENTROPY_BITS - 1
MARGIN_STEPS = 2  # codes per octave (factor 2): the decoded margin is within ±19% of the true one
MARGIN_MIN_LOG2 = -24  # margins below 2**-24 (and exact ties) are code 0
MARGIN_MAX_CODE = 255
ZSTD_LEVEL = 15  # routing is written once and read many times: a high level pays (docs/corpus-format.md)
ROW_GROUP = 65_536  # rows: ~1,600 tokens at 40 layers, a few steps per group (reading one step prunes the rest)
SOURCES = ("replay", "rollout")
# Experts per token a cache may declare: the views' SQL is unrolled over k and grows with k squared (token_view_sql);
# real routers choose 1 to 16 experts.
MAX_TOP_K = 64
# the token-tier table of each source inside a replay cache
SOURCE_TABLES = {"replay": "routing_tokens", "rollout": "rollout_tokens"}
_KEY = 2**32  # order of a token's experts: sort key (not top-1) * 2**40 + (255 - weight code) * 2**32 + id
SMALL_INT_COLUMNS = ("top1", "margin", "entropy")


def expert_type(num_experts: int) -> pa.DataType:
    """The narrowest unsigned integer type that holds expert ids below `num_experts`."""
    if num_experts <= 2**8:
        return pa.uint8()
    if num_experts <= 2**16:
        return pa.uint16()
    return pa.uint32()


def _small(num_experts: int) -> np.dtype:
    return np.dtype(expert_type(num_experts).to_pandas_dtype())


# --- quantization (numpy; the inverse of each is the SQL in the views and the decode_* functions) ---------
def weight_scale(weights: np.ndarray) -> float:
    """The per-trajectory scale of the weight codes: the largest weight (1.0 when there is none)."""
    top = float(np.max(weights)) if weights.size else 0.0
    return top if np.isfinite(top) and top > 0 else 1.0


def quantize_weights(weights: np.ndarray, scale: float, levels: int = WEIGHT_LEVELS) -> np.ndarray:
    """Codes 0..levels of weights in [0, scale]: round(w / scale * levels)."""
    return np.clip(np.rint(np.asarray(weights, np.float64) / scale * levels), 0, levels).astype(np.uint8)


def dequantize_weights(codes: np.ndarray, scale: float | np.ndarray, levels: int = WEIGHT_LEVELS) -> np.ndarray:
    """The weights codes stand for (error at most scale / (2 * levels))."""
    return np.asarray(codes, np.float64) * (np.asarray(scale, np.float64) / levels)


def encode_margin(margin: np.ndarray) -> np.ndarray:
    """Log-scale codes: 0 for margin < 2**MARGIN_MIN_LOG2, else 1 + floor(MARGIN_STEPS * (log2 m - min))."""
    m = np.nan_to_num(np.asarray(margin, np.float64), nan=0.0, posinf=np.finfo(np.float64).max)
    out = np.zeros(m.shape, np.uint8)
    big = m >= 2.0**MARGIN_MIN_LOG2
    codes = 1 + np.floor(MARGIN_STEPS * (np.log2(m[big]) - MARGIN_MIN_LOG2))
    out[big] = np.clip(codes, 1, MARGIN_MAX_CODE)
    return out


def decode_margin(codes: np.ndarray) -> np.ndarray:
    """The geometric middle of each code's interval (0 for code 0)."""
    c = np.asarray(codes, np.float64)
    return np.where(c > 0, 2.0 ** ((c - 0.5) / MARGIN_STEPS + MARGIN_MIN_LOG2), 0.0)


def quantize_entropy(entropy: np.ndarray, num_experts: int) -> np.ndarray:
    """Codes 0..ENTROPY_LEVELS of entropy / ln E (the largest possible entropy)."""
    top = np.log(max(2, num_experts))
    h = np.nan_to_num(np.asarray(entropy, np.float64), nan=0.0)
    return np.clip(np.rint(h / top * ENTROPY_LEVELS), 0, ENTROPY_LEVELS).astype(np.uint8)


def dequantize_entropy(codes: np.ndarray, num_experts: int | np.ndarray) -> np.ndarray:
    """Entropy in nats (error at most ln E / (2 * ENTROPY_LEVELS))."""
    return np.asarray(codes, np.float64) * (np.log(np.maximum(2, num_experts)) / ENTROPY_LEVELS)


def encode_sets(experts: np.ndarray, weights: np.ndarray | None, num_experts: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, k) expert ids -> (gaps, top-1 position, order): the sorted set as gaps, and where the top-1 is.

    `order` (n, k) sorts each row by expert id (apply it to the weights). The top-1 is the expert with
    the largest weight (the first of the row when there are no weights: an engine's own first choice).
    """
    ids = np.asarray(experts, np.int64)
    order = np.argsort(ids, axis=1, kind="stable")
    ids_sorted = np.take_along_axis(ids, order, 1)
    first = np.argmax(weights, axis=1) if weights is not None and weights.size else np.zeros(len(ids), np.int64)
    top1 = np.argmax(order == first[:, None], axis=1)
    gaps = np.diff(ids_sorted, axis=1, prepend=-1) - 1
    return gaps.astype(_small(num_experts)), top1.astype(np.uint8), order


def decode_sets(gaps: np.ndarray) -> np.ndarray:
    """Sorted expert ids from their gaps."""
    g = np.asarray(gaps, np.int64)
    return np.cumsum(g + 1, axis=1) - 1


def _fixed(column: pa.ChunkedArray | pa.Array, k: int, dtype: Any) -> np.ndarray:
    """A list column whose rows all hold k values (nulls as zeros) as an (n, k) array."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    filled = arr.fill_null(pa.scalar([0] * k, arr.type))
    return np.asarray(filled.flatten().to_numpy(zero_copy_only=False), dtype=dtype).reshape(len(arr), k)


def decode_token_table(table: pa.Table) -> pa.Table:
    """Token-tier rows -> the `routing` view's columns (TOKEN_VIEW_COLUMNS), decoded as the view's SQL does."""
    import pyarrow.compute as pc

    lengths = pc.list_value_length(table["experts"]).to_numpy(zero_copy_only=False)
    parts = []
    for k in np.unique(lengths):
        rows = table.filter(pa.array(lengths == k)) if len(np.unique(lengths)) > 1 else table
        parts.append(_decode_k(rows, int(k)))
    if not parts:
        return _decode_k(table, 0)
    return pa.concat_tables(parts)


def _decode_k(table: pa.Table, k: int) -> pa.Table:
    n = table.num_rows
    ids = decode_sets(_fixed(table["experts"], k, np.int64))  # (n, k) sorted
    top1 = table["top1"].to_numpy(zero_copy_only=False).astype(np.int64) if n else np.zeros(0, np.int64)
    has_w = _valid(table["weights"])
    codes = _fixed(table["weights"], k, np.int64)
    position = np.arange(k)[None, :]
    key = (position != top1[:, None]) * (_KEY * 256) + (255 - codes) * _KEY + ids
    order = np.argsort(key, axis=1, kind="stable")
    scale = table["weight_scale"].to_numpy(zero_copy_only=False).astype(np.float64)
    weights = np.take_along_axis(codes, order, 1) * (np.nan_to_num(scale) / WEIGHT_LEVELS)[:, None]
    experts_e = np.take_along_axis(ids, order, 1)
    num = table["num_experts"].to_numpy(zero_copy_only=False)
    entropy = table["entropy"].to_numpy(zero_copy_only=False)
    margin = table["margin"].to_numpy(zero_copy_only=False)
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    weight_lists = pa.ListArray.from_arrays(offsets, pa.array(weights.reshape(-1).astype(np.float32)),
                                            mask=pa.array(~has_w))
    return pa.table({
        "trajectory_id": table["trajectory_id"], "step": table["step"], "segment": table["segment"],
        "token_index": table["token_index"], "token_id": table["token_id"], "layer": table["layer"],
        "experts": pa.ListArray.from_arrays(offsets, pa.array(experts_e.reshape(-1).astype(np.int32))),
        "weights": weight_lists,
        "entropy": pa.array(dequantize_entropy(np.nan_to_num(entropy.astype(np.float64)),
                                               np.asarray(num, np.float64)).astype(np.float32),
                            mask=np.isnan(entropy.astype(np.float64))),
        "margin": pa.array(decode_margin(np.nan_to_num(margin.astype(np.float64))).astype(np.float32),
                           mask=np.isnan(margin.astype(np.float64))),
        "expert_set": pa.ListArray.from_arrays(offsets, pa.array(ids.reshape(-1).astype(np.int32))),
        "top1_expert": pa.array(ids[np.arange(n), top1].astype(np.int32) if n else np.zeros(0, np.int32)),
        "source": table["source"],
    })


def _valid(column: pa.ChunkedArray) -> np.ndarray:
    """Per row: is the value present (not null)?"""
    import pyarrow.compute as pc

    return np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), dtype=bool)


# --- tables ----------------------------------------------------------------------------------------
def _lists(values: np.ndarray, typ: pa.DataType) -> pa.Array:
    n, k = values.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), typ))


def token_table(trajectory_id: str, layers: Sequence[int], experts: np.ndarray, weights: np.ndarray | None,
                entropy: np.ndarray | None, margin: np.ndarray | None, num_experts: int, *, steps: np.ndarray,
                segments: np.ndarray, token_ids: np.ndarray, source: str = "replay",
                scale: float | None = None) -> pa.Table:
    """The token tier of one trajectory: one row per (token, layer), token-major.

    experts, weights: (N, L, k) over the N tokens and `layers`; entropy, margin: (N, L) or None;
    steps, segments, token_ids: (N,) per token. Weights may be None (a rollout records only experts).
    Built in blocks of tokens, so the memory it needs beyond its inputs stays small at any length.
    """
    schema = _with_expert_type(ROUTING_TOKENS, num_experts)
    s = None if weights is None else (weight_scale(np.asarray(weights)) if scale is None else scale)
    seg_names, seg_codes = np.unique(np.asarray(segments).astype(str), return_inverse=True)
    n = experts.shape[0]
    parts = [_token_block(trajectory_id, layers, experts[a:a + TOKEN_BLOCK],
                          None if weights is None else weights[a:a + TOKEN_BLOCK],
                          None if entropy is None else entropy[a:a + TOKEN_BLOCK],
                          None if margin is None else margin[a:a + TOKEN_BLOCK], num_experts, a,
                          np.asarray(steps)[a:a + TOKEN_BLOCK], seg_names, seg_codes[a:a + TOKEN_BLOCK],
                          np.asarray(token_ids)[a:a + TOKEN_BLOCK], source, s, schema)
             for a in range(0, n, TOKEN_BLOCK)]
    return pa.concat_tables(parts) if parts else schema.empty_table()


TOKEN_BLOCK = 4_096  # tokens per block when building a token table


def _repeat(value: str, rows: int) -> pa.Array:
    """A string column of one repeated value (dictionary-built: no Python list of `rows` items)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), pa.array([value])).cast(pa.string())


def _token_block(trajectory_id: str, layers: Sequence[int], experts: np.ndarray, weights: np.ndarray | None,
                 entropy: np.ndarray | None, margin: np.ndarray | None, num_experts: int, first: int,
                 steps: np.ndarray, seg_names: np.ndarray, seg_codes: np.ndarray, token_ids: np.ndarray, source: str,
                 scale: float | None, schema: pa.Schema) -> pa.Table:
    n, n_layers, k = experts.shape
    rows = n * n_layers
    flat_w = None if weights is None else np.asarray(weights, np.float64).reshape(rows, k)
    gaps, top1, order = encode_sets(np.asarray(experts).reshape(rows, k), flat_w, num_experts)
    token = np.repeat(np.arange(n), n_layers)
    segment = pa.DictionaryArray.from_arrays(pa.array(seg_codes[token].astype(np.int32)), pa.array(seg_names))
    cols: dict[str, Any] = {
        "trajectory_id": _repeat(trajectory_id, rows),
        "source": _repeat(source, rows),
        "step": pa.array(steps[token].astype(np.int32)),
        "segment": segment.cast(pa.string()),
        "token_index": pa.array((token + first).astype(np.int32)),
        "token_id": pa.array(token_ids[token].astype(np.int32)),
        "layer": pa.array(np.tile(np.asarray(layers, dtype=np.int16), n)),
        "experts": _lists(gaps, expert_type(num_experts)),
        "top1": pa.array(top1, pa.uint8()),
    }
    if flat_w is None or scale is None:
        cols["weights"] = pa.nulls(rows, pa.list_(pa.uint8()))
        cols["weight_scale"] = pa.nulls(rows, pa.float32())
    else:
        cols["weights"] = _lists(quantize_weights(np.take_along_axis(flat_w, order, 1), scale), pa.uint8())
        cols["weight_scale"] = pa.array(np.full(rows, scale, np.float32))
    cols["margin"] = pa.nulls(rows, pa.uint8()) if margin is None else \
        pa.array(encode_margin(np.asarray(margin).reshape(rows)), pa.uint8())
    cols["entropy"] = pa.nulls(rows, pa.uint8()) if entropy is None else \
        pa.array(quantize_entropy(np.asarray(entropy).reshape(rows), num_experts), pa.uint8())
    cols["num_experts"] = pa.array(np.full(rows, num_experts, np.int32))
    return pa.table(cols).cast(schema)


def _with_expert_type(schema: pa.Schema, num_experts: int) -> pa.Schema:
    """The schema with expert ids in the narrowest type for this checkpoint."""
    typ = expert_type(num_experts)
    fields = []
    for f in schema:
        if f.name == "experts":
            f = f.with_type(pa.list_(typ))
        elif f.name == "expert":
            f = f.with_type(typ)
        fields.append(f)
    return pa.schema(fields)


def aggregate_tables(trajectory_id: str, layers: Sequence[int], experts: np.ndarray, weights: np.ndarray,
                     num_experts: int, *, steps: np.ndarray, segments: np.ndarray,
                     scale: float | None = None) -> dict[str, pa.Table]:
    """The step tier of one trajectory from full-precision routing: `routing_steps` and `routing_segments`.

    Per (step, layer, expert) and per (segment, layer, expert): how many of the tokens were routed to
    the expert (`tokens`) and their mean gate weight (a 6-bit code on `weight_scale`). Only experts that
    received tokens have rows. Counted per step (and per block of a segment's tokens) into a dense
    layers x experts grid, so memory stays small at any trajectory length.
    """
    s = weight_scale(np.asarray(weights)) if scale is None else scale
    layer_ids = np.asarray(layers, np.int64)
    step_of = np.asarray(steps, np.int64)
    seg_names, seg_codes = np.unique(np.asarray(segments).astype(str), return_inverse=True)
    out = {}
    for table, codes, schema in (("routing_steps", step_of, ROUTING_STEPS),
                                 ("routing_segments", seg_codes.astype(np.int64), ROUTING_SEGMENTS)):
        keys, layer_col, expert_col, counts, means = [], [], [], [], []
        for key in np.unique(codes):
            tokens = np.flatnonzero(codes == key)
            count, total = _grid(experts, weights, tokens, num_experts)  # (L * E,) each
            hit = np.flatnonzero(count)
            keys.append(np.full(len(hit), key))
            layer_col.append(layer_ids[hit // num_experts])
            expert_col.append(hit % num_experts)
            counts.append(count[hit])
            means.append(total[hit] / count[hit])
        key_col = _cat(keys, np.int64)
        cols: dict[str, Any] = {"trajectory_id": _repeat(trajectory_id, len(key_col))}
        if table == "routing_steps":
            cols["step"] = pa.array(key_col.astype(np.int32))
        else:
            cols["segment"] = pa.array(seg_names[key_col].tolist() if len(key_col) else [], pa.string())
        cols.update(layer=pa.array(_cat(layer_col, np.int16)), expert=pa.array(_cat(expert_col, np.int64)),
                    tokens=pa.array(_cat(counts, np.int32)),
                    weight=pa.array(quantize_weights(_cat(means, np.float64), s, STEP_WEIGHT_LEVELS)),
                    weight_scale=pa.array(np.full(len(key_col), s, np.float32)))
        out[table] = pa.table(cols).cast(_with_expert_type(schema, num_experts))
    return out


def _cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def _grid(experts: np.ndarray, weights: np.ndarray, tokens: np.ndarray, num_experts: int,
          block: int = TOKEN_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Assignments and weight sums of `tokens` per (layer, expert), flat over layers x experts."""
    n_layers = experts.shape[1]
    offset = (np.arange(n_layers, dtype=np.int64) * num_experts)[None, :, None]  # (1, L, 1)
    count = np.zeros(n_layers * num_experts, np.int64)
    total = np.zeros(n_layers * num_experts, np.float64)
    for start in range(0, len(tokens), block):
        rows = tokens[start:start + block]
        cells = (np.asarray(experts[rows], np.int64) + offset).ravel()
        count += np.bincount(cells, minlength=len(count))
        total += np.bincount(cells, weights=np.asarray(weights[rows], np.float64).ravel(), minlength=len(total))
    return count, total


def write_options(table: str) -> dict[str, Any]:
    """pyarrow.parquet.write_table options for a routing table (docs/corpus-format.md, encodings); {} for others."""
    split: tuple[str, ...]
    delta: tuple[str, ...] = ()
    if table in SOURCE_TABLES.values():
        split, delta = SMALL_INT_COLUMNS, ("token_index",)
    elif table in ("routing_steps", "routing_segments"):
        split = ("expert", "tokens", "weight")
    else:
        return {}
    encoding = {c: "BYTE_STREAM_SPLIT" for c in split} | {c: "DELTA_BINARY_PACKED" for c in delta}
    dictionary = ["trajectory_id", "source", "segment", "step", "layer", "token_id", "weight_scale", "num_experts",
                  "weights.list.element", "experts.list.element"]
    return {"compression": "zstd", "compression_level": ZSTD_LEVEL, "row_group_size": ROW_GROUP,
            "use_dictionary": dictionary, "column_encoding": encoding, "write_statistics": True}


# --- SQL: the views decode what the tables store ---------------------------------------------------
# Columns of the `routing` view (one row per token and MoE layer), whatever the stored format:
TOKEN_VIEW_COLUMNS = ("trajectory_id", "step", "segment", "token_index", "token_id", "layer", "experts", "weights",
                      "entropy", "margin", "expert_set", "top1_expert", "source")
AGGREGATE_VIEW_COLUMNS = ("trajectory_id", "layer", "expert", "tokens", "mean_weight")


def token_view_sql(relation: str, top_k: int) -> str:
    """A SELECT over ROUTING_TOKENS rows (`relation`: a table expression) giving TOKEN_VIEW_COLUMNS.

    `experts` lists the top-1 (largest weight) first, then by decreasing weight, ties by id; `weights`
    follow it (decoded as docs/corpus-format.md specifies); `expert_set` is the sorted set and `top1_expert` the
    top-1, both cheap (no sort) for set statistics. The expressions are unrolled for `top_k` (the list
    length of every row of `relation`), since DuckDB evaluates them much faster than lambdas; the text grows
    with top_k squared, so top_k is bounded by MAX_TOP_K.
    """
    k = int(top_k)
    if not 1 <= k <= MAX_TOP_K:
        raise ValueError(f"top_k must be from 1 to {MAX_TOP_K}")
    ids = [" + ".join(f"experts[{j}]::BIGINT" for j in range(1, i + 1)) + f" + {i - 1}" for i in range(1, k + 1)]
    keys = [f"(top1 <> {i - 1})::BIGINT * {_KEY * 256} + (255 - coalesce(weights[{i}], 0)::BIGINT) * {_KEY} "
            f"+ ({ids[i - 1]})" for i in range(1, k + 1)]
    experts = ", ".join(f"(_keys[{i}] % {_KEY})::INTEGER" for i in range(1, k + 1))
    weights = ", ".join(f"((255 - (_keys[{i}] // {_KEY}) % 256) * weight_scale / {WEIGHT_LEVELS})::FLOAT"
                        for i in range(1, k + 1))
    return (f"SELECT trajectory_id, step, segment, token_index, token_id, layer, [{experts}] AS experts, "
            f"CASE WHEN weights IS NOT NULL THEN [{weights}] END AS weights, "
            f"(entropy * ln(greatest(num_experts, 2)) / {ENTROPY_LEVELS})::FLOAT AS entropy, "
            f"(CASE WHEN margin > 0 THEN pow(2.0, (margin - 0.5) / {MARGIN_STEPS} + ({MARGIN_MIN_LOG2})) "
            f"WHEN margin = 0 THEN 0.0 END)::FLOAT AS margin, "
            f"_set::INTEGER[] AS expert_set, _set[top1 + 1]::INTEGER AS top1_expert, source "
            f"FROM (SELECT *, list_sort([{', '.join(keys)}]) AS _keys, [{', '.join(ids)}] AS _set FROM {relation})")


def aggregate_view_sql(relation: str, key: str) -> str:
    """A SELECT over ROUTING_STEPS / ROUTING_SEGMENTS rows (`key`: step or segment) with the mean weight decoded."""
    return (f"SELECT trajectory_id, {key}, layer, expert::INTEGER AS expert, tokens::BIGINT AS tokens, "
            f"weight * weight_scale / {STEP_WEIGHT_LEVELS} AS mean_weight FROM {relation}")
