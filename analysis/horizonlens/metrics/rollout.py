"""Rollout vs replay routing: where the inference engine's experts differ from the training-side replay's.

Per token and MoE layer, with A the replay's top-k and B the rollout's: set agreement, Jaccard overlap,
top-1 agreement, and the replay router's margin, which marks a mismatch as a *near-tie* that numerics alone
can flip (docs/routing.md, "What is compared"). `compare_topk` computes these on arrays; `comparison_tables`
folds them into the per-step tables the views read (`rollout_compare`, `rollout_compare_steps`). The
summaries below are DuckDB queries over those tables, never over token rows, so they stay fast at
40 layers x 256 experts and 45k-token trajectories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from horizonlens.corpus.schema import ROLLOUT_COMPARE, ROLLOUT_COMPARE_STEPS
from horizonlens.metrics.replays import checkpoint_scope
from horizonlens.query.store import CorpusStore

if TYPE_CHECKING:
    from horizonlens.model.rollout_import import AlignedRollout
    from horizonlens.replays.cache import ReplayCache

# A replay margin below this (in the router's own score units, see the storage docs) counts as a near-tie.
NEAR_TIE_MARGIN = 0.01
AROUND_WINDOW = 3  # steps up to and including a failed check that count as "before" it
_CHUNK = 4096  # tokens compared at a time: (chunk, layers, k, k) booleans stay a few MB at 40 x top-8


@dataclass
class TopkComparison:
    """Per (token, layer) agreement between two routings of the same tokens."""

    overlap: np.ndarray  # (T, L) int: |A ∩ B|
    top1_match: np.ndarray  # (T, L) bool
    near_tie: np.ndarray | None  # (T, L) bool: the replay's k-th vs (k+1)-th margin is below the threshold
    valid: np.ndarray  # (T, L) bool: both sides routed this (token, layer)
    k: int

    @property
    def set_match(self) -> np.ndarray:
        """(T, L) bool: the same k experts, in any order."""
        return self.overlap == self.k

    @property
    def jaccard(self) -> np.ndarray:
        """(T, L) float: |A ∩ B| / |A ∪ B|."""
        return self.overlap / (2 * self.k - self.overlap)


def compare_topk(replay: np.ndarray, rollout: np.ndarray, margin: np.ndarray | None = None,
                 threshold: float = NEAR_TIE_MARGIN) -> TopkComparison:
    """Compare two (T, L, k) expert-id arrays (−1 = not routed) token by token and layer by layer."""
    replay = np.asarray(replay)
    rollout = np.asarray(rollout)
    if replay.shape != rollout.shape or replay.ndim != 3:
        raise ValueError(f"expected two (tokens, layers, k) arrays of one shape, got {replay.shape} and "
                         f"{rollout.shape}")
    t, n_layers, k = replay.shape
    overlap = np.zeros((t, n_layers), dtype=np.int16)
    for start in range(0, t, _CHUNK):
        a = replay[start:start + _CHUNK]
        b = rollout[start:start + _CHUNK]
        # (chunk, L, k, k): expert i of A equals expert j of B; ids within one top-k are distinct
        overlap[start:start + _CHUNK] = (a[..., :, None] == b[..., None, :]).any(-1).sum(-1)
    valid = (replay >= 0).all(-1) & (rollout >= 0).all(-1)
    overlap[~valid] = 0
    near = None
    if margin is not None:
        near = np.asarray(margin, dtype=np.float64) < threshold  # NaN (no margin recorded) is not a near-tie
    return TopkComparison(overlap, np.asarray((replay[..., 0] == rollout[..., 0]) & valid), near, np.asarray(valid), k)


def comparison_tables(trajectory_id: str, comparison: TopkComparison, layers: list[int], steps: np.ndarray,
                      segments: np.ndarray) -> tuple[pa.Table, pa.Table]:
    """Fold a trajectory's per-(token, layer) comparison into its rollout_compare and rollout_compare_steps rows.

    `steps` and `segments` give each compared token's step and segment in the replay's rendering.
    Only (token, layer) cells routed on both sides count.
    """
    c = comparison
    tokens_ok = c.valid.all(axis=1)  # a token is compared when every MoE layer was routed on both sides
    if not tokens_ok.any():
        return ROLLOUT_COMPARE.empty_table(), ROLLOUT_COMPARE_STEPS.empty_table()
    keep = np.flatnonzero(tokens_ok)
    mismatch = ~c.set_match[keep]  # (M, L)
    top1_miss = ~c.top1_match[keep]
    near = c.near_tie[keep] if c.near_tie is not None else None
    jac = c.jaccard[keep]
    keys = pd.DataFrame({"step": np.asarray(steps)[keep].astype(np.int32),
                         "segment": np.asarray(segments)[keep].astype(str)})
    per_layer = []
    for li, layer in enumerate(layers):
        df = keys.assign(tokens=1, set_mismatch=mismatch[:, li].astype(np.int32),
                         top1_mismatch=top1_miss[:, li].astype(np.int32), jaccard_sum=jac[:, li])
        if near is not None:
            df = df.assign(near_ties=near[:, li].astype(np.int32),
                           near_tie_mismatch=(near[:, li] & mismatch[:, li]).astype(np.int32))
        per_layer.append(df.groupby(["step", "segment"], as_index=False).sum().assign(layer=layer))
    layer_rows = pd.concat(per_layer, ignore_index=True).assign(trajectory_id=trajectory_id)
    any_miss = mismatch.any(axis=1)
    steps_df = keys.assign(tokens=1, any_mismatch=any_miss.astype(np.int32),
                           any_top1_mismatch=top1_miss.any(axis=1).astype(np.int32))
    if near is not None:
        # every layer where the sets differ is a near-tie: the whole token's mismatch is explained by ties
        steps_df = steps_df.assign(near_tie_only=(any_miss & ~(mismatch & ~near).any(axis=1)).astype(np.int32))
    step_rows = steps_df.groupby(["step", "segment"], as_index=False).sum().assign(trajectory_id=trajectory_id)
    return (_conform(layer_rows, ROLLOUT_COMPARE), _conform(step_rows, ROLLOUT_COMPARE_STEPS))


def routing_arrays(routing: pa.Table, layers: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decoded token-tier rows (the `routing` view's columns) as arrays over their tokens.

    Returns (token_index (T,), token_id (T,), experts (T, L, k) with the top-1 first and -1 where a layer has
    no row, margin (T, L) with NaN where none was recorded), tokens in increasing position.
    """
    n_layers = len(layers)
    if routing.num_rows == 0:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, n_layers, 0), np.int16),
                np.zeros((0, n_layers)))
    token = routing["token_index"].to_numpy(zero_copy_only=False).astype(np.int64)
    layer = routing["layer"].to_numpy(zero_copy_only=False).astype(np.int64)
    experts = routing["experts"]
    k = int(pc.max(pc.list_value_length(experts)).as_py() or 0)
    flat = pc.list_flatten(experts).to_numpy(zero_copy_only=False)
    if len(flat) != routing.num_rows * k:
        raise ValueError("routing rows hold top-k lists of different lengths")
    positions, rows = np.unique(token, return_inverse=True)
    order = np.asarray(layers, np.int64)
    cols = np.searchsorted(order, layer)
    known = (cols < n_layers) & (order[np.minimum(cols, n_layers - 1)] == layer)
    out = np.full((len(positions), n_layers, k), -1, dtype=np.int16)
    out[rows[known], cols[known]] = flat.reshape(-1, k)[known]
    margin = np.full((len(positions), n_layers), np.nan)
    if "margin" in routing.column_names:
        values = routing["margin"].to_numpy(zero_copy_only=False).astype(np.float64)  # null -> NaN
        margin[rows[known], cols[known]] = values[known]
    ids = np.zeros(len(positions), np.int64)
    ids[rows] = routing["token_id"].to_numpy(zero_copy_only=False)
    return positions, ids, out, margin


def compare_aligned(aligned: AlignedRollout, layers: list[int], replay_routing: pa.Table,
                    threshold: float = NEAR_TIE_MARGIN) -> dict[str, pa.Table]:
    """The comparison tables of a rollout already on the replay's token positions (at import)."""
    positions, token_ids, replay, margin = routing_arrays(replay_routing, layers)
    return _compare_on(aligned.trajectory_id, layers, aligned.token_index, aligned.token_ids, aligned.experts,
                       aligned.steps, aligned.segments, positions, token_ids, replay, margin, threshold)


def compare_stored_rollout(cache: ReplayCache, trajectory_id: str, threshold: float = NEAR_TIE_MARGIN
                           ) -> dict[str, pa.Table] | None:
    """The comparison tables of a stored rollout against the stored replay (None unless both are there)."""
    rollout = cache.read_rollout(trajectory_id)
    replay = cache.read_routing(trajectory_id) if cache.has(trajectory_id, tokens=True) else None
    if rollout is None or replay is None or not rollout.num_rows:
        return None
    layers = sorted(set(rollout["layer"].to_pylist()))
    where, ids, experts, _ = routing_arrays(rollout, layers)
    first = rollout.filter(pc.equal(rollout["layer"], layers[0]))
    order = np.argsort(first["token_index"].to_numpy(zero_copy_only=False))
    steps = first["step"].to_numpy(zero_copy_only=False)[order]
    segments = np.asarray(first["segment"].to_pylist(), dtype=object)[order].astype(str)
    positions, token_ids, replay_experts, margin = routing_arrays(replay, layers)
    return _compare_on(trajectory_id, layers, where, ids, experts, steps, segments, positions, token_ids,
                       replay_experts, margin, threshold)


def _compare_on(trajectory_id: str, layers: list[int], where: np.ndarray, ids: np.ndarray, rollout: np.ndarray,
                steps: np.ndarray, segments: np.ndarray, positions: np.ndarray, token_ids: np.ndarray,
                replay: np.ndarray, margin: np.ndarray, threshold: float) -> dict[str, pa.Table]:
    """Compare rollout rows at replay positions `where` with the replay's rows at `positions`."""
    k = rollout.shape[2]
    at = np.searchsorted(positions, where)
    inside = at < len(positions)
    at = np.minimum(at, max(0, len(positions) - 1))
    # the same position and the same token (a replay rendered differently since the import compares nothing)
    found = inside & (positions[at] == where) & (token_ids[at] == ids) if len(positions) else inside
    theirs = np.full(rollout.shape, -1, dtype=np.int16)
    near = np.full(rollout.shape[:2], np.nan)
    if replay.shape[2] == k and len(positions):
        theirs[found] = replay[at[found]]
        near[found] = margin[at[found]]
    comparison = compare_topk(theirs, rollout, near if not np.isnan(near[found]).all() else None, threshold)
    layer_rows, step_rows = comparison_tables(trajectory_id, comparison, layers, steps, segments)
    return {"rollout_compare": layer_rows, "rollout_compare_steps": step_rows}


def _conform(df: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """The frame as a table of `schema` (columns it lacks, e.g. near-ties without margins, are null)."""
    cols = {f.name: (pa.array(df[f.name].to_numpy(), f.type) if f.name in df else pa.nulls(len(df), f.type))
            for f in schema}
    return pa.table(cols, schema=schema)


# --- summaries over the stored comparison --------------------------------------------------------
def has_comparison(store: CorpusStore, checkpoint_id: str) -> bool:
    """Whether any rollout of this checkpoint has been compared with its replay."""
    return bool(store.scalar("SELECT count(*) > 0 FROM rollout_compare_steps WHERE checkpoint_id = ?",
                             [checkpoint_id]))


def compared_trajectories(store: CorpusStore, checkpoint_id: str) -> list[str]:
    """Trajectories whose rollout routing was compared with the replay, sorted."""
    return store.query("SELECT DISTINCT trajectory_id FROM rollout_compare_steps WHERE checkpoint_id = ? ORDER BY 1",
                       [checkpoint_id]).column(0).to_pylist()


def layer_mismatch(store: CorpusStore, checkpoint_id: str, trajectory_ids: list[str] | None = None) -> pd.DataFrame:
    """Per MoE layer: compared tokens, set and top-1 mismatch rates, mean Jaccard, near-tie share of mismatches."""
    scope, params = checkpoint_scope(checkpoint_id, trajectory_ids, "c")
    return store.query(f"""
      SELECT layer, sum(tokens)::BIGINT AS tokens,
             sum(set_mismatch) / sum(tokens) AS set_mismatch, sum(top1_mismatch) / sum(tokens) AS top1_mismatch,
             sum(jaccard_sum) / sum(tokens) AS jaccard,
             sum(near_tie_mismatch) / nullif(sum(set_mismatch), 0) AS near_tie_share,
             sum(near_ties) / sum(tokens) AS near_tie_rate
      FROM rollout_compare c WHERE {scope} GROUP BY layer ORDER BY layer""", params).to_pandas()


def step_mismatch(store: CorpusStore, checkpoint_id: str, trajectory_id: str) -> pd.DataFrame:
    """Per step of one trajectory: compared tokens, share with any-layer mismatch, set-mismatch rate per cell."""
    return store.query("""
      WITH s AS (SELECT step, sum(tokens) AS tokens, sum(any_mismatch) AS any_mismatch,
                        sum(near_tie_only) AS near_tie_only
                 FROM rollout_compare_steps WHERE checkpoint_id = ? AND trajectory_id = ? GROUP BY step),
           l AS (SELECT step, sum(set_mismatch) AS cells_mismatch, sum(tokens) AS cells,
                        sum(near_tie_mismatch) AS near_tie_mismatch
                 FROM rollout_compare WHERE checkpoint_id = ? AND trajectory_id = ? GROUP BY step)
      SELECT s.step, s.tokens::BIGINT AS tokens, s.any_mismatch / s.tokens AS token_any_layer_mismatch,
             l.cells_mismatch / l.cells AS set_mismatch,
             l.near_tie_mismatch / nullif(l.cells_mismatch, 0) AS near_tie_share
      FROM s JOIN l USING (step) ORDER BY s.step""", [checkpoint_id, trajectory_id] * 2).to_pandas()


def step_token_comparison(store: CorpusStore, checkpoint_id: str, trajectory_id: str, step: int,
                          threshold: float = NEAR_TIE_MARGIN) -> pd.DataFrame:
    """One step's (token, layer) cells routed by both sides: both top-k lists, the margin, and a state.

    `state`: 0 = the same experts, 1 = different at a near-tie of the replay router, 2 = different with a
    clear margin. Reads the token rows of this one step only.
    """
    df = store.query("""
      SELECT r.token_index, r.token_id, r.segment, r.layer, r.experts AS replay, o.experts AS rollout, r.margin,
             r.expert_set = o.expert_set AS same_set
      FROM routing r JOIN routing_rollout o
        ON o.checkpoint_id = r.checkpoint_id AND o.trajectory_id = r.trajectory_id AND o.token_index = r.token_index
       AND o.layer = r.layer AND o.token_id = r.token_id
      WHERE r.checkpoint_id = ? AND r.trajectory_id = ? AND r.step = ? AND o.step = ?
      ORDER BY r.token_index, r.layer""", [checkpoint_id, trajectory_id, int(step), int(step)]).to_pandas()
    near = df["margin"].astype(float) < threshold
    df["state"] = np.where(df["same_set"], 0, np.where(near, 1, 2))
    return df.drop(columns=["same_set"])


def _rates(store: CorpusStore, sql_key: str, checkpoint_id: str, trajectory_ids: list[str] | None,
           extra_params: list[Any] | None = None) -> pd.DataFrame:
    """Any-layer and per-cell mismatch rates grouped by a key expression over step rows (c) and layer rows."""
    scope, params = checkpoint_scope(checkpoint_id, trajectory_ids, "c")
    pre = list(extra_params or [])
    return store.query(f"""
      WITH s AS (SELECT {sql_key} AS key, sum(tokens) AS tokens, sum(any_mismatch) AS any_mismatch
                 FROM rollout_compare_steps c WHERE {scope} GROUP BY ALL),
           l AS (SELECT {sql_key} AS key, sum(set_mismatch) AS cells_mismatch, sum(tokens) AS cells,
                        sum(near_tie_mismatch) AS near_tie_mismatch
                 FROM rollout_compare c WHERE {scope} GROUP BY ALL)
      SELECT s.key, s.tokens::BIGINT AS tokens, s.any_mismatch / s.tokens AS token_any_layer_mismatch,
             l.cells_mismatch / l.cells AS set_mismatch, l.near_tie_mismatch / nullif(l.cells_mismatch, 0)
             AS near_tie_share
      FROM s JOIN l USING (key) ORDER BY s.key""", [*pre, *params, *pre, *params]).to_pandas()


def by_position(store: CorpusStore, checkpoint_id: str, bucket: int = 10,
                trajectory_ids: list[str] | None = None) -> pd.DataFrame:
    """Mismatch along the horizon: rates per bucket of `bucket` steps (step = first step of the bucket)."""
    df = _rates(store, "(c.step // ?) * ?", checkpoint_id, trajectory_ids, [int(bucket), int(bucket)])
    return df.rename(columns={"key": "step"})


def by_segment(store: CorpusStore, checkpoint_id: str, trajectory_ids: list[str] | None = None) -> pd.DataFrame:
    """Mismatch rates per segment type (reasoning, tool call, observation, ...)."""
    return _rates(store, "c.segment", checkpoint_id, trajectory_ids).rename(columns={"key": "segment"})


def around_failures(store: CorpusStore, checkpoint_id: str, window: int = AROUND_WINDOW,
                    trajectory_ids: list[str] | None = None) -> dict[str, Any]:
    """Mismatch in the steps up to a failed check (the failed step and the `window` before it) vs elsewhere.

    Returns {"window", "before_failed": {...}, "elsewhere": {...}, "ratio", "profile": [...]}, where each
    group has tokens, token_any_layer_mismatch and set_mismatch, ratio is before/elsewhere of the any-layer
    share, and profile gives the any-layer share at each step offset −window..window from failed and
    passed checks (offset 0 = the checked step).
    """
    scope, params = checkpoint_scope(checkpoint_id, trajectory_ids, "c")
    near_failed = f"""EXISTS (SELECT 1 FROM steps f WHERE f.trajectory_id = c.trajectory_id AND f.check_passed = false
                       AND c.step BETWEEN f.step - {int(window)} AND f.step)"""
    groups = _rates(store, f"CASE WHEN {near_failed} THEN 'before_failed' ELSE 'elsewhere' END", checkpoint_id,
                    trajectory_ids)
    out: dict[str, Any] = {"window": int(window)}
    for name in ("before_failed", "elsewhere"):
        row = groups[groups["key"] == name]
        out[name] = ({"tokens": int(row["tokens"].iloc[0]),
                      "token_any_layer_mismatch": _float(row["token_any_layer_mismatch"].iloc[0]),
                      "set_mismatch": _float(row["set_mismatch"].iloc[0])} if len(row) else
                     {"tokens": 0, "token_any_layer_mismatch": None, "set_mismatch": None})
    a, b = out["before_failed"]["token_any_layer_mismatch"], out["elsewhere"]["token_any_layer_mismatch"]
    out["ratio"] = a / b if a is not None and b else None
    profile = store.query(f"""
      WITH s AS (SELECT c.trajectory_id, c.step, sum(c.tokens) AS tokens, sum(c.any_mismatch) AS any_mismatch
                 FROM rollout_compare_steps c WHERE {scope} GROUP BY ALL),
           anchors AS (SELECT trajectory_id, step,
                              CASE WHEN check_passed THEN 'passed check' ELSE 'failed check' END AS anchor
                       FROM steps WHERE check_passed IS NOT NULL
                         AND trajectory_id IN (SELECT trajectory_id FROM s))
      SELECT a.anchor, s.step - a.step AS step_offset, sum(s.tokens)::BIGINT AS tokens,
             sum(s.any_mismatch) / sum(s.tokens) AS token_any_layer_mismatch
      FROM anchors a JOIN s ON s.trajectory_id = a.trajectory_id AND abs(s.step - a.step) <= ?
      GROUP BY ALL ORDER BY a.anchor, step_offset""", [*params, int(window)]).to_pandas()
    out["profile"] = profile
    return out


def _float(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def summary(store: CorpusStore, checkpoint_id: str, trajectory_ids: list[str] | None = None) -> dict[str, Any]:
    """The `rollout_routing` object of `horizonlens metrics --json` (see docs/routing.md for each field)."""
    scope, params = checkpoint_scope(checkpoint_id, trajectory_ids, "c")
    if not has_comparison(store, checkpoint_id):
        return {"tokens_compared": 0, "token_any_layer_mismatch": None, "per_layer": [], "by_position": [],
                "by_segment": [], "around_failures": None, "near_tie_share": None, "trajectories": 0}
    head = store.query(f"""
      SELECT sum(tokens)::BIGINT AS tokens, sum(any_mismatch) / sum(tokens) AS any_share,
             sum(near_tie_only) / nullif(sum(any_mismatch), 0) AS near_tie_tokens,
             count(DISTINCT trajectory_id) AS trajectories
      FROM rollout_compare_steps c WHERE {scope}""", params).to_pylist()[0]
    cells = store.query(f"""
      SELECT sum(set_mismatch) / sum(tokens) AS set_mismatch,
             sum(near_tie_mismatch) / nullif(sum(set_mismatch), 0) AS near_tie_share
      FROM rollout_compare c WHERE {scope}""", params).to_pylist()[0]
    layers = layer_mismatch(store, checkpoint_id, trajectory_ids)
    around = around_failures(store, checkpoint_id, trajectory_ids=trajectory_ids)
    return {
        "trajectories": int(head["trajectories"]),
        "tokens_compared": int(head["tokens"] or 0),
        "token_any_layer_mismatch": _float(head["any_share"]),
        "set_mismatch": _float(cells["set_mismatch"]),
        "near_tie_share": _float(cells["near_tie_share"]),
        "near_tie_threshold": NEAR_TIE_MARGIN,
        "token_mismatch_near_tie_only": _float(head["near_tie_tokens"]),
        "per_layer": [{"layer": int(r["layer"]), "set_mismatch": _float(r["set_mismatch"]),
                       "top1_mismatch": _float(r["top1_mismatch"]), "near_tie_share": _float(r["near_tie_share"]),
                       "jaccard": _float(r["jaccard"]), "tokens": int(r["tokens"])} for r in _records(layers)],
        "by_position": _records(by_position(store, checkpoint_id, trajectory_ids=trajectory_ids)),
        "by_segment": _records(by_segment(store, checkpoint_id, trajectory_ids)),
        "around_failures": {**{k: v for k, v in around.items() if k != "profile"},
                            "profile": _records(around["profile"])},
    }


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows (NaN → None, numpy scalars → Python)."""
    out = []
    for row in df.to_dict(orient="records"):
        out.append({str(k): (None if v is None or (isinstance(v, float) and np.isnan(v)) else
                        v.item() if hasattr(v, "item") else v) for k, v in row.items()})
    return out
