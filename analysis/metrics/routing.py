"""Expert-routing statistics from replay results (OLMoE §5, Mixtral §5), computed in DuckDB.

All functions read the `routing` view (one row per token and MoE layer, with the router's own
top-k `experts` and `weights`) for one checkpoint. Loads are shares of token→expert assignments:
a layer's shares sum to 1 and the uniform baseline is 1/E (each token picks k of E experts, so
each expert receives k/E of the tokens).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from horizonlens.corpus.layout import read_checkpoint_meta
from horizonlens.corpus.store import CorpusStore
from horizonlens.metrics.info import entropy, js_distance


def _scope(checkpoint_id: str, trajectory_ids: list[str] | None) -> tuple[str, list[Any]]:
    sql, params = "r.checkpoint_id = ?", [checkpoint_id]
    if trajectory_ids:
        sql += f" AND r.trajectory_id IN ({', '.join('?' for _ in trajectory_ids)})"
        params += list(trajectory_ids)
    return sql, params


def num_experts(store: CorpusStore, checkpoint_id: str) -> int:
    """E: from the checkpoint's metadata when present, else the largest expert id seen + 1."""
    try:
        return int(read_checkpoint_meta(store.root, checkpoint_id)["num_experts"])
    except (KeyError, ValueError, TypeError):
        pass
    value = store.scalar("SELECT max(list_max(experts)) FROM routing WHERE checkpoint_id = ?", [checkpoint_id])
    return int(value or 0) + 1


def expert_load(store: CorpusStore, checkpoint_id: str, by: str | None = None,
                trajectory_ids: list[str] | None = None) -> pd.DataFrame:
    """Share of assignments per (layer, [segment|domain], expert) vs the uniform 1/E baseline."""
    if by not in (None, "segment", "domain"):
        raise ValueError("expert load is split by segment or domain")
    scope, params = _scope(checkpoint_id, trajectory_ids)
    key = {"segment": "r.segment", "domain": "t.domain", None: "'all'"}[by]
    join = "JOIN trajectories t ON t.trajectory_id = r.trajectory_id" if by == "domain" else ""
    df = store.query(f"""
      SELECT layer, grp AS "group", expert, count(*) AS assignments
      FROM (SELECT r.layer, {key} AS grp, unnest(r.experts) AS expert FROM routing r {join} WHERE {scope})
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
    """For one trajectory: share of each step's assignments per expert, per layer (heatmap data)."""
    params: list[Any] = [checkpoint_id, trajectory_id]
    layer_sql = ""
    if layer is not None:
        layer_sql = " AND layer = ?"
        params.append(int(layer))
    df = store.query(f"""
      SELECT step, layer, expert, count(*) AS assignments
      FROM (SELECT step, layer, unnest(experts) AS expert FROM routing
            WHERE checkpoint_id = ? AND trajectory_id = ?{layer_sql})
      GROUP BY ALL ORDER BY step, layer, expert""", params).to_pandas()
    totals = df.groupby(["step", "layer"])["assignments"].transform("sum")
    df["share"] = df["assignments"] / totals.where(totals > 0, 1)
    return df


def coactivation(store: CorpusStore, checkpoint_id: str, layer: int,
                 trajectory_ids: list[str] | None = None) -> pd.DataFrame:
    """N(Ei, Ej) / N(Ei): how often expert j is in the same token's top-k when expert i is (OLMoE §5)."""
    scope, params = _scope(checkpoint_id, trajectory_ids)
    df = store.query(f"""
      WITH x AS (SELECT r.experts FROM routing r WHERE {scope} AND r.layer = ?),
      single AS (SELECT e AS i, count(*) AS n_i FROM (SELECT unnest(experts) AS e FROM x) GROUP BY ALL),
      pairs AS (SELECT i, j, count(*) AS n_ij FROM (
                  SELECT i, unnest(experts) AS j FROM (SELECT experts, unnest(experts) AS i FROM x)) WHERE i <> j
                GROUP BY ALL)
      SELECT p.i, p.j, p.n_ij, s.n_i, p.n_ij / s.n_i AS rate FROM pairs p JOIN single s USING (i)
      ORDER BY i, j""", [*params, int(layer)]).to_pandas()
    return df


def consecutive_same_expert(store: CorpusStore, checkpoint_id: str,
                            trajectory_ids: list[str] | None = None) -> pd.DataFrame:
    """Per layer: how often consecutive tokens keep their expert (Mixtral §5), beside the random baseline.

    The share of consecutive token pairs with the same top-1 expert, the random baseline Σ share² for it,
    and the share of pairs whose top-k sets overlap.
    """
    scope, params = _scope(checkpoint_id, trajectory_ids)
    df = store.query(f"""
      WITH x AS (
        SELECT r.layer, r.experts[1] AS top1, r.experts,
               lag(r.experts[1]) OVER w AS prev_top1, lag(r.experts) OVER w AS prev_experts
        FROM routing r WHERE {scope}
        WINDOW w AS (PARTITION BY r.checkpoint_id, r.trajectory_id, r.layer ORDER BY r.token_index))
      SELECT layer, count(*) AS pairs, avg(CAST(top1 = prev_top1 AS DOUBLE)) AS same_top1,
             avg(CAST(len(list_intersect(experts, prev_experts)) > 0 AS DOUBLE)) AS any_overlap
      FROM x WHERE prev_top1 IS NOT NULL GROUP BY layer ORDER BY layer""", params).to_pandas()
    shares = store.query(f"""
      SELECT layer, experts[1] AS e, count(*) AS n FROM routing r WHERE {scope} GROUP BY ALL""", params).to_pandas()
    base = {}
    for layer, part in shares.groupby("layer"):
        p = part["n"].to_numpy(dtype=float)
        p = p / p.sum()
        base[layer] = float((p * p).sum())
    df["random_baseline_top1"] = df["layer"].map(base)
    return df


def routing_drift(store: CorpusStore, checkpoint_id: str, trajectory_id: str,
                  reference_steps: int = 3, per_layer: bool = False) -> pd.DataFrame:
    """Per step: how far its routing has drifted from the trajectory's first agent steps.

    The Jensen–Shannon distance of the step's expert load vs that of the first `reference_steps` agent
    steps, averaged over layers (0 = routes like the start, 1 = disjoint experts). `per_layer` adds one
    column `drift_L<layer>` per MoE layer (the real layer number) with that layer's distance.
    """
    load = step_expert_load(store, checkpoint_id, trajectory_id)
    if load.empty:
        return pd.DataFrame(columns=["step", "drift"])
    agent_steps = store.query("SELECT step FROM steps WHERE trajectory_id = ? AND source = 'agent' ORDER BY step",
                              [trajectory_id]).column(0).to_pylist()
    ref_steps = set(agent_steps[:reference_steps])
    E = int(load["expert"].max()) + 1
    out = []
    layers = sorted(load["layer"].unique())
    ref = {}
    for layer in layers:
        part = load[(load["layer"] == layer) & (load["step"].isin(ref_steps))]
        ref[layer] = np.bincount(part["expert"], weights=part["assignments"], minlength=E)
    for step, part in load.groupby("step"):
        ds = []
        row: dict[str, Any] = {"step": _int_key(step)}
        for layer, lp in part.groupby("layer"):
            vec = np.bincount(lp["expert"], weights=lp["assignments"], minlength=E)
            ds.append(js_distance(vec, ref[layer]))
            if per_layer:
                row[f"drift_L{_int_key(layer)}"] = ds[-1]
        out.append({**row, "drift": float(np.mean(ds))})
    return pd.DataFrame(out)


def checkpoint_agreement(store: CorpusStore, checkpoint_a: str, checkpoint_b: str,
                         trajectory_id: str) -> pd.DataFrame:
    """|E_A ∩ E_B| / k per layer on the same tokens (requires the same tokenization)."""
    return store.query("""
      SELECT a.layer, count(*) AS tokens,
             avg(len(list_intersect(a.experts, b.experts)) / len(a.experts)) AS agreement,
             avg(CAST(a.experts[1] = b.experts[1] AS DOUBLE)) AS top1_agreement
      FROM routing a JOIN routing b
        ON a.trajectory_id = b.trajectory_id AND a.token_index = b.token_index AND a.layer = b.layer
       AND a.token_id = b.token_id
      WHERE a.checkpoint_id = ? AND b.checkpoint_id = ? AND a.trajectory_id = ?
      GROUP BY a.layer ORDER BY a.layer""", [checkpoint_a, checkpoint_b, trajectory_id]).to_pandas()


def _int_key(key: object) -> int:
    """A group key of an integer column (layer, step) as an int; pandas types group keys as any scalar."""
    if not isinstance(key, (int, np.integer)):
        raise TypeError(f"expected an integer group key, got {key!r}")
    return int(key)
