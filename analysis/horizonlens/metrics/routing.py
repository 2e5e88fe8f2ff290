"""Expert-routing statistics from replay results (OLMoE §5, Mixtral §5), computed in DuckDB and numpy.

Loads are shares of token→expert assignments: a layer's shares sum to 1 and the uniform baseline is 1/E
(each token picks k of E experts, so each expert receives k/E of the tokens).

Which tier each function reads (docs/corpus-format.md, "Replay cache"):
- loads, usage, drift and per-step loads read the **step tier** (`routing_segments`, `routing_steps`:
  per step or segment × layer × expert), a few hundred rows per step at 40 layers × 256 experts;
- co-activation, consecutive-token statistics and checkpoint agreement need token rows and read the
  **token tier** (`routing`). Corpus-wide, those read at most `max_rows` (token, layer) rows: whole
  trajectories in a fixed pseudo-random order until the budget is spent (2M rows: every token of the
  bundled sample's 60 replays, ~50k tokens at 40 layers). The result's `attrs["sample"]` says how many
  trajectories and tokens were read out of how many.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd

from horizonlens.metrics.info import entropy
from horizonlens.metrics.replays import checkpoint_scope
from horizonlens.query.store import CorpusStore
from horizonlens.replays.layout import read_checkpoint_meta

# Token-tier statistics over a whole corpus read at most this many (token, layer) rows by default.
MAX_ROWS = 2_000_000



def num_experts(store: CorpusStore, checkpoint_id: str) -> int:
    """E: from the checkpoint's metadata when present, else the largest expert id seen + 1."""
    try:
        return int(read_checkpoint_meta(store.root, checkpoint_id)["num_experts"])
    except (KeyError, ValueError, TypeError):
        pass
    if "routing_steps" not in store.replay_views:
        return 0
    value = store.scalar("SELECT max(expert) FROM routing_steps WHERE checkpoint_id = ?", [checkpoint_id])
    return int(value if value is not None else -1) + 1


def expert_load(store: CorpusStore, checkpoint_id: str, by: str | None = None,
                trajectory_ids: list[str] | None = None) -> pd.DataFrame:
    """Share of assignments per (layer, [segment|domain|teacher], expert) vs the uniform 1/E baseline (step tier)."""
    if by not in (None, "segment", "domain", "teacher"):
        raise ValueError("expert load is split by segment, domain or teacher")
    if "routing_segments" not in store.replay_views:
        return pd.DataFrame(columns=["layer", "group", "expert", "assignments", "share", "uniform",
                                     "specialization"])
    scope, params = checkpoint_scope(checkpoint_id, trajectory_ids, "r")
    key = {"segment": "r.segment", "domain": "t.domain", "teacher": "coalesce(t.teacher, '(none)')", None: "'all'"}[by]
    join = "JOIN trajectories t ON t.trajectory_id = r.trajectory_id" if by in ("domain", "teacher") else ""
    df = store.query(f"""
      SELECT r.layer, {key} AS "group", r.expert, sum(r.tokens)::BIGINT AS assignments
      FROM routing_segments r {join} WHERE {scope}
      GROUP BY ALL ORDER BY layer, "group", expert""", params).to_pandas()
    E = num_experts(store, checkpoint_id)
    full = _complete(df, E)
    totals = full.groupby(["layer", "group"])["assignments"].transform("sum")
    full["share"] = full["assignments"] / totals.where(totals > 0, 1)
    full["uniform"] = 1 / E
    full["specialization"] = full["share"] / full["uniform"]
    return full


def _complete(df: pd.DataFrame, E: int) -> pd.DataFrame:
    """Add zero rows for experts a (layer, group) never used, so charts show them."""
    if df.empty:
        return df
    keys = df[["layer", "group"]].drop_duplicates()
    grid = keys.merge(pd.DataFrame({"expert": pd.Series(np.arange(E), dtype=df["expert"].dtype)}), how="cross")
    out = grid.merge(df, on=["layer", "group", "expert"], how="left")
    out["assignments"] = out["assignments"].fillna(0).astype(int)
    return out


def layer_usage(store: CorpusStore, checkpoint_id: str, trajectory_ids: list[str] | None = None) -> pd.DataFrame:
    """Per layer: usage entropy (nats, max ln E), normalised entropy, max/mean load (imbalance), CV."""
    load = expert_load(store, checkpoint_id, None, trajectory_ids)
    rows = []
    E = num_experts(store, checkpoint_id)
    for layer, part in load.groupby("layer"):
        counts = part["assignments"].to_numpy(dtype=float)
        mean = counts.mean() if counts.size else 0
        rows.append({"layer": _int_key(layer), "usage_entropy": entropy(counts), "max_entropy": float(np.log(E)),
                     "normalized_entropy": entropy(counts) / np.log(E) if E > 1 else 1.0,
                     "imbalance": float(counts.max() / mean) if mean else None,
                     "cv": float(counts.std() / mean) if mean else None,
                     "unused_experts": int((counts == 0).sum())})
    return pd.DataFrame(rows)


def step_expert_load(store: CorpusStore, checkpoint_id: str, trajectory_id: str,
                     layer: int | None = None) -> pd.DataFrame:
    """For one trajectory: share of each step's assignments per expert, per layer (heatmap data; step tier)."""
    if "routing_steps" not in store.replay_views:
        return pd.DataFrame(columns=["step", "layer", "expert", "assignments", "share"])
    params: list[Any] = [checkpoint_id, trajectory_id]
    layer_sql = ""
    if layer is not None:
        layer_sql = " AND layer = ?"
        params.append(int(layer))
    df = store.query(f"""
      SELECT step, layer, expert, tokens AS assignments FROM routing_steps
      WHERE checkpoint_id = ? AND trajectory_id = ?{layer_sql} ORDER BY step, layer, expert""", params).to_pandas()
    totals = df.groupby(["step", "layer"])["assignments"].transform("sum")
    df["share"] = df["assignments"] / totals.where(totals > 0, 1)
    return df


def step_layer_load(store: CorpusStore, checkpoint_id: str, trajectory_id: str, step: int) -> pd.DataFrame:
    """One step's routing per (layer, expert): assignments, share of the layer's assignments, mean gate weight.

    The step panel's data at any shape: it reads the step tier (rows for the experts the step used),
    never the step's token rows.
    """
    if "routing_steps" not in store.replay_views:
        return pd.DataFrame(columns=["layer", "expert", "assignments", "share", "mean_weight"])
    df = store.query("""
      SELECT layer, expert, tokens AS assignments, mean_weight FROM routing_steps
      WHERE checkpoint_id = ? AND trajectory_id = ? AND step = ? ORDER BY layer, expert""",
                     [checkpoint_id, trajectory_id, int(step)]).to_pandas()
    totals = df.groupby("layer")["assignments"].transform("sum")
    df.insert(3, "share", df["assignments"] / totals.where(totals > 0, 1))
    return df


def token_sample(store: CorpusStore, checkpoint_id: str, trajectory_ids: list[str] | None = None,
                 max_tokens: int | None = None) -> tuple[list[str], dict[str, Any]]:
    """Trajectories whose token rows a corpus-wide statistic reads: all, or a fixed sample within `max_tokens`.

    Only trajectories with a token tier count. The order is a hash of the id (stable as the cache grows),
    so the sample is the same from run to run. Returns the ids and a note for `attrs["sample"]`.
    """
    if "routing" not in store.replay_views:
        return [], {"trajectories": 0, "of_trajectories": 0, "tokens": 0, "of_tokens": 0, "sampled": False}
    scope, params = checkpoint_scope(checkpoint_id, trajectory_ids, "r")
    rows = store.query(f"""
      SELECT s.trajectory_id, sum(s.n_tokens)::BIGINT AS tokens FROM replay_steps s
      WHERE s.checkpoint_id = ? AND s.trajectory_id IN (SELECT DISTINCT r.trajectory_id FROM routing r
                                                        WHERE {scope})
      GROUP BY 1""", [checkpoint_id, *params]).to_pylist()
    ordered = sorted(rows, key=lambda r: hashlib.sha1(r["trajectory_id"].encode()).hexdigest())
    total = sum(int(r["tokens"] or 0) for r in rows)
    chosen: list[str] = []
    used = 0
    for r in ordered:
        n = int(r["tokens"] or 0)
        if max_tokens is not None and chosen and used + n > max_tokens:
            break
        chosen.append(r["trajectory_id"])
        used += n
    note = {"trajectories": len(chosen), "of_trajectories": len(rows), "tokens": used, "of_tokens": total,
            "sampled": len(chosen) < len(rows)}
    return sorted(chosen), note


def _sets(column: Any) -> np.ndarray | None:
    """A list column of expert sets as an (n, k) array (None if rows differ in k: not one router's output)."""
    arr = column.combine_chunks()
    lengths = np.diff(arr.offsets.to_numpy())
    if len(arr) == 0 or (lengths != lengths[0]).any():
        return None
    return arr.flatten().to_numpy(zero_copy_only=False).astype(np.int64).reshape(len(arr), int(lengths[0]))


def coactivation(store: CorpusStore, checkpoint_id: str, layer: int,
                 trajectory_ids: list[str] | None = None, max_rows: int | None = MAX_ROWS) -> pd.DataFrame:
    """N(Ei, Ej) / N(Ei): how often expert j is in the same token's top-k when expert i is (OLMoE §5).

    Reads the token tier of at most `max_rows` tokens of this layer (see `token_sample`; attrs["sample"]).
    """
    ids, note = token_sample(store, checkpoint_id, trajectory_ids, max_rows)
    empty = pd.DataFrame({"i": pd.Series(dtype="int32"), "j": pd.Series(dtype="int32"),
                          "n_ij": pd.Series(dtype="int64"), "n_i": pd.Series(dtype="int64"),
                          "rate": pd.Series(dtype="float64")})
    empty.attrs["sample"] = note
    if not ids:
        return empty
    scope, params = checkpoint_scope(checkpoint_id, ids, "r")
    flat = _sets(store.query(f"SELECT r.expert_set FROM routing r WHERE {scope} AND r.layer = ?",
                             [*params, int(layer)]).column(0))
    if flat is None or flat.shape[1] < 2:  # top-1 routing has no pairs
        return empty
    E = int(flat.max()) + 1
    single = np.bincount(flat.ravel(), minlength=E)
    pairs = (flat[:, :, None] * E + flat[:, None, :]).ravel()  # every ordered pair within a token, i == j included
    joint = np.bincount(pairs, minlength=E * E).reshape(E, E)
    np.fill_diagonal(joint, 0)
    i, j = np.nonzero(joint)
    out = pd.DataFrame({"i": i.astype(np.int32), "j": j.astype(np.int32), "n_ij": joint[i, j].astype(np.int64),
                        "n_i": single[i].astype(np.int64)})
    out["rate"] = out["n_ij"] / out["n_i"]
    out.attrs["sample"] = note
    return out


def consecutive_same_expert(store: CorpusStore, checkpoint_id: str,
                            trajectory_ids: list[str] | None = None,
                            max_rows: int | None = MAX_ROWS) -> pd.DataFrame:
    """Per layer: how often consecutive tokens keep their expert (Mixtral §5), beside the random baseline.

    The share of consecutive token pairs with the same top-1 expert, the random baseline Σ share² for it,
    and the share of pairs whose top-k sets overlap. Reads at most `max_rows` (token, layer) rows of the
    token tier (attrs["sample"] says how many tokens).
    """
    columns = ["layer", "pairs", "same_top1", "any_overlap", "random_baseline_top1"]
    n_layers = max(1, len(store.query("SELECT DISTINCT layer FROM routing_steps WHERE checkpoint_id = ?",
                                      [checkpoint_id]))) if "routing_steps" in store.replay_views else 1
    ids, note = token_sample(store, checkpoint_id, trajectory_ids, None if max_rows is None else max_rows // n_layers)
    out = pd.DataFrame(columns=columns)
    out.attrs["sample"] = note
    if not ids:
        return out
    scope, params = checkpoint_scope(checkpoint_id, ids, "r")
    rows = store.query(f"SELECT r.trajectory_id, r.layer, r.token_index, r.top1_expert, r.expert_set FROM routing r "
                       f"WHERE {scope}", params)
    sets = _sets(rows["expert_set"])
    traj = rows["trajectory_id"].combine_chunks().dictionary_encode().indices.to_numpy()
    layer = rows["layer"].to_numpy()
    order = np.lexsort((rows["token_index"].to_numpy(), layer, traj))  # each (trajectory, layer) in token order
    traj, layer = traj[order], layer[order]
    top1 = rows["top1_expert"].to_numpy()[order]
    pair = (traj[1:] == traj[:-1]) & (layer[1:] == layer[:-1])  # row i+1 follows row i in one sequence
    same = top1[1:] == top1[:-1]
    overlap = np.zeros(len(pair), dtype=bool)
    if sets is not None:
        sets = sets[order]
        for start in range(0, len(pair), 65_536):  # bounded memory: k x k comparisons per pair
            a = sets[start + 1:start + 65_537]
            b = sets[start:start + len(a)]
            overlap[start:start + len(a)] = (a[:, :, None] == b[:, None, :]).any(axis=(1, 2))
    records = []
    for value in np.unique(layer):
        mine = pair & (layer[1:] == value)
        shares = np.bincount(top1[layer == value]).astype(float)
        shares = shares[shares > 0] / shares.sum()
        records.append({"layer": int(value), "pairs": int(mine.sum()),
                        "same_top1": float(same[mine].mean()) if mine.any() else None,
                        "any_overlap": float(overlap[mine].mean()) if mine.any() else None,
                        "random_baseline_top1": float((shares * shares).sum())})
    out = pd.DataFrame(records, columns=columns)
    out.attrs["sample"] = note
    return out


def routing_drift(store: CorpusStore, checkpoint_id: str, trajectory_id: str,
                  reference_steps: int = 3, per_layer: bool = False) -> pd.DataFrame:
    """Per step: how far its routing has drifted from the trajectory's first agent steps.

    The Jensen–Shannon distance of the step's expert load vs that of the first `reference_steps` agent
    steps, averaged over layers (0 = routes like the start, 1 = disjoint experts). `per_layer` adds one
    column `drift_L<layer>` per MoE layer (the real layer number) with that layer's distance. Reads the
    step tier.
    """
    load = step_expert_load(store, checkpoint_id, trajectory_id)
    if load.empty:
        return pd.DataFrame(columns=["step", "drift"])
    agent_steps = store.query("SELECT step FROM steps WHERE trajectory_id = ? AND source = 'agent' ORDER BY step",
                              [trajectory_id]).column(0).to_pylist()
    ref_steps = set(agent_steps[:reference_steps])
    steps, step_idx = np.unique(load["step"].to_numpy(), return_inverse=True)
    layers, layer_idx = np.unique(load["layer"].to_numpy(), return_inverse=True)
    E = int(load["expert"].max()) + 1
    counts = np.zeros((len(steps), len(layers), E))  # (S, L, E)
    counts[step_idx, layer_idx, load["expert"].to_numpy()] = load["assignments"].to_numpy()
    ref = counts[np.isin(steps, list(ref_steps))].sum(0)  # (L, E)
    present = counts.sum(-1) > 0  # (S, L): layers a step has routing for
    distance = js_distances(counts, ref[None])  # (S, L)
    drift = np.where(present, distance, 0).sum(1) / np.maximum(present.sum(1), 1)
    out: dict[str, Any] = {"step": steps.astype(int)}
    if per_layer:  # NaN where a step has no routing at that layer
        out.update({f"drift_L{int(layer)}": np.where(present[:, li], distance[:, li], np.nan)
                    for li, layer in enumerate(layers)})
    out["drift"] = drift.astype(float)
    return pd.DataFrame(out)


def js_distances(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """`info.js_distance` over the last axis of broadcast count arrays (0 where either is empty)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    sp, sq = p.sum(-1, keepdims=True), q.sum(-1, keepdims=True)
    empty = (sp[..., 0] <= 0) | (sq[..., 0] <= 0)
    p, q = p / np.where(sp > 0, sp, 1), q / np.where(sq > 0, sq, 1)
    m = (p + q) / 2

    def kl(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(x > 0, x * np.log2(np.where(x > 0, x, 1) / np.where(y > 0, y, 1)), 0.0).sum(-1)

    out = np.sqrt(np.maximum(0.0, (kl(p, m) + kl(q, m)) / 2))
    return np.where(empty, 0.0, out)


def checkpoint_agreement(store: CorpusStore, checkpoint_a: str, checkpoint_b: str,
                         trajectory_id: str) -> pd.DataFrame:
    """|E_A ∩ E_B| / k per layer on the same tokens (requires the same tokenization; token tier)."""
    if "routing" not in store.replay_views:
        return pd.DataFrame(columns=["layer", "tokens", "agreement", "top1_agreement"])
    return store.query("""
      SELECT a.layer, count(*) AS tokens,
             avg(len(list_intersect(a.expert_set, b.expert_set)) / len(a.expert_set)) AS agreement,
             avg(CAST(a.top1_expert = b.top1_expert AS DOUBLE)) AS top1_agreement
      FROM routing a JOIN routing b
        ON a.trajectory_id = b.trajectory_id AND a.token_index = b.token_index AND a.layer = b.layer
       AND a.token_id = b.token_id
      WHERE a.checkpoint_id = ? AND b.checkpoint_id = ? AND a.trajectory_id = ? AND b.trajectory_id = ?
      GROUP BY a.layer ORDER BY a.layer""", [checkpoint_a, checkpoint_b, trajectory_id, trajectory_id]).to_pandas()


def _int_key(key: object) -> int:
    """A group key of an integer column (layer, step) as an int; pandas types group keys as any scalar."""
    if not isinstance(key, (int, np.integer)):
        raise TypeError(f"expected an integer group key, got {key!r}")
    return int(key)
