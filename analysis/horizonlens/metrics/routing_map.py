"""The routing map (replayed steps or runs placed by their expert-usage signature) and routing health.

**Map**: signatures (metrics/routing_probe.py) projected to two dimensions by PCA and by UMAP, at most
`max_points` points (whole trajectories in a fixed pseudo-random order; `attrs["sample"]` says how many).
**Health**: per MoE layer and tenth of the horizon, from the step tier: each expert's share of assignments,
rare and dead experts, utilisation, max/mean load and normalised usage entropy. docs/metrics.md ("Routing
probe, map and health") defines each.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from horizonlens.metrics.info import entropy
from horizonlens.metrics.replays import checkpoint_scope
from horizonlens.metrics.routing import num_experts
from horizonlens.metrics.routing_probe import DEFAULT_K, run_signatures, step_signatures, step_targets
from horizonlens.query.store import CorpusStore

MAX_POINTS = 5_000
PCA_DIMS = 30
POSITION_BINS = 10
COLOR_FIELDS = ("teacher", "domain", "outcome", "kind", "hazard", "mode")
HEALTH_COLUMNS = ["layer", "bin", "assignments", "experts", "dead", "rare", "utilisation", "max_mean_load",
                  "normalized_entropy"]


def _project(matrix: Any, method: str, seed: int) -> np.ndarray:
    """(n, 2) coordinates of the rows of a (sparse) matrix by PCA or UMAP."""
    from sklearn.decomposition import PCA

    dense = matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)
    n = dense.shape[0]
    if n < 3:
        return np.zeros((n, 2))
    dims = max(2, min(PCA_DIMS, n - 1, dense.shape[1]))
    pcs = PCA(n_components=dims, random_state=seed).fit_transform(dense)
    if method == "pca":
        return pcs[:, :2]
    if method != "umap":
        raise ValueError("the map is projected by pca or umap")
    import umap

    neighbours = max(2, min(15, n - 1))
    return umap.UMAP(n_neighbors=neighbours, min_dist=0.1, random_state=seed, n_jobs=1).fit_transform(pcs)


def _kind(source: Any, has_call: Any) -> str:
    """What a step is, for colouring: tool call, message, observation, user, system."""
    if source == "agent":
        return "tool call" if has_call else "message"
    return {"environment": "observation"}.get(str(source), str(source))


def routing_map(store: CorpusStore, checkpoint_id: str, trajectory_ids: list[str] | None = None,
                level: str = "step", method: str = "pca", max_points: int = MAX_POINTS, k: int = DEFAULT_K,
                modes: pd.DataFrame | None = None, seed: int = 0) -> pd.DataFrame:
    """Replayed steps (or runs, `level="run"`) placed by their routing signature: x, y and every colour field.

    `modes`: failure-mode members (trajectory_id, step, mode, label) to colour failed steps by their mode.
    """
    if level not in ("step", "run"):
        raise ValueError("the map shows steps or runs")
    sig = step_signatures(store, checkpoint_id, trajectory_ids, max_points if level == "step" else None)
    total = store.scalar(f"SELECT count(*) FROM (SELECT DISTINCT r.trajectory_id{', r.step' if level == 'step' else ''}"
                         f" FROM routing_steps r WHERE {checkpoint_scope(checkpoint_id, trajectory_ids, 'r')[0]})",
                         checkpoint_scope(checkpoint_id, trajectory_ids, "r")[1])
    meta = step_targets(store, sig.keys, k)
    if level == "run":
        ids, matrix = run_signatures(sig)
        if len(ids) > max_points:
            keep = np.sort(np.random.default_rng(seed).choice(len(ids), max_points, replace=False))
            ids, matrix = ids.iloc[keep].reset_index(drop=True), matrix[keep]
        frame = ids.merge(meta.drop_duplicates("trajectory_id")[["trajectory_id", "teacher", "domain", "outcome"]],
                          on="trajectory_id", how="left")
        frame["step"] = None
        frame["kind"] = "run"
        frame["hazard"] = None
    else:
        matrix = sig.matrix
        calls = store.query("SELECT trajectory_id, step, len(tool_calls) > 0 AS has_call FROM steps WHERE "
                            "list_contains(?, trajectory_id)", [sorted(sig.keys["trajectory_id"].unique().tolist())]
                            ).to_pandas() if len(sig.keys) else pd.DataFrame(columns=["trajectory_id", "step",
                                                                                     "has_call"])
        frame = meta.merge(calls, on=["trajectory_id", "step"], how="left")
        frame["kind"] = [_kind(s, c) for s, c in zip(frame["source"], frame["has_call"], strict=True)]
        frame["hazard"] = frame["fail_k"].map({"true": f"check fails within {k} steps",
                                               "false": f"no failure within {k} steps"}).fillna("no check ahead")
    frame = with_modes(frame, modes if level == "step" else None)
    xy = _project(matrix, method, seed) if len(frame) else np.zeros((0, 2))
    frame["x"], frame["y"] = xy[:, 0] if len(frame) else [], xy[:, 1] if len(frame) else []
    frame.attrs["sample"] = {"points": int(len(frame)), "of": int(total or 0),
                             "sampled": int(len(frame)) < int(total or 0), "level": level, "method": method}
    columns = ["trajectory_id", "step", "x", "y", *COLOR_FIELDS]
    return frame[[c for c in columns if c in frame]]


def with_modes(points: pd.DataFrame, modes: pd.DataFrame | None) -> pd.DataFrame:
    """Map points (steps) with their failure mode's label in `mode` ("not a failed step" for the others).

    `modes`: failure-mode members with their labels (trajectory_id, step, label); None: every point "—".
    """
    out = points.drop(columns=["mode"], errors="ignore")
    if modes is None or modes.empty or out["step"].isna().all():
        return out.assign(mode="—")  # assign keeps attrs
    labelled = modes[["trajectory_id", "step", "label"]].drop_duplicates(["trajectory_id", "step"])
    out = out.merge(labelled.astype({"step": "int64"}), on=["trajectory_id", "step"], how="left")
    out["mode"] = out.pop("label").fillna("not a failed step")
    out.attrs = dict(points.attrs)
    return out


def routing_health(store: CorpusStore, checkpoint_id: str, trajectory_ids: list[str] | None = None,
                   bins: int = POSITION_BINS) -> pd.DataFrame:
    """Per layer and horizon bin (bin -1: the whole horizon): HEALTH_COLUMNS, from the step tier."""
    scope, params = checkpoint_scope(checkpoint_id, trajectory_ids, "r")
    loads = store.query(f"""
      SELECT r.layer, CAST(least(?, floor(? * r.step / greatest(t.n_steps, 1))) AS INTEGER) AS bin, r.expert,
             sum(r.tokens)::BIGINT AS assignments
      FROM routing_steps r JOIN trajectories t ON t.trajectory_id = r.trajectory_id
      WHERE {scope} GROUP BY ALL""", [bins - 1, bins, *params]).to_pandas()
    E = num_experts(store, checkpoint_id)
    if loads.empty or E <= 0:
        return pd.DataFrame(columns=HEALTH_COLUMNS)
    whole = loads.groupby(["layer", "expert"], as_index=False)["assignments"].sum().assign(bin=-1)
    rows = []
    for (layer, b), part in pd.concat([whole, loads]).groupby(["layer", "bin"], sort=True):
        counts = np.zeros(E)
        counts[part["expert"].to_numpy(dtype=int)] += part["assignments"].to_numpy(dtype=float)
        total = counts.sum()
        share = counts / total if total else counts
        rare = int((share < 1 / (10 * E)).sum())
        rows.append({"layer": int(layer), "bin": int(b), "assignments": int(total), "experts": E,
                     "dead": int((counts == 0).sum()), "rare": rare, "utilisation": (E - rare) / E,
                     "max_mean_load": float(share.max() * E) if total else None,
                     "normalized_entropy": entropy(counts) / np.log(E) if E > 1 else 1.0})
    return pd.DataFrame(rows, columns=HEALTH_COLUMNS)


def busiest_experts(load: pd.DataFrame, top: int = 3) -> pd.DataFrame:
    """Per layer, its `top` busiest experts and their shares (from `routing.expert_load(..., by=None)`)."""
    if load.empty:
        return pd.DataFrame(columns=["layer", "rank", "expert", "share", "uniform"])
    ranked = load.sort_values(["layer", "share", "expert"], ascending=[True, False, True])
    ranked = ranked.assign(rank=ranked.groupby("layer").cumcount() + 1)
    return ranked[ranked["rank"] <= top][["layer", "rank", "expert", "share", "uniform"]].reset_index(drop=True)
