"""Ranking, folding and ordering experts so routing views hold up at 256 experts and 40-60 layers.

At the bundled 4 x 16 shape every expert fits on an axis; at Agents-A1's 40 x 256 it does not. The
views therefore show the experts that carry the load, in an order that puts like next to like, and
fold the rest into one "other" entry whose size is stated (the MoE papers draw the same way: OLMoE §5
and Mixtral §5 plot selected experts and layers, DeepSeek-V3 orders experts by load).

Everything here works on the step table: one row per (step, layer, expert) with the number of
token→expert `assignments` (as `routing.step_expert_load` returns it), optionally with `mean_weight`.
Expert ids are per layer: expert 17 of layer 3 and expert 17 of layer 10 are different networks, so
rankings are per layer unless a function says otherwise. Pure pandas/numpy; no Streamlit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

OTHER = -1  # the expert id of the folded "other" entry


def expert_order(load: pd.DataFrame, experts: Sequence[int] | None = None) -> list[int]:
    """Expert ids by total assignments in `load`, busiest first (ties: lower id first).

    `experts` adds ids that `load` never mentions (unused experts), which go last.
    """
    totals = load.groupby("expert")["assignments"].sum() if not load.empty else pd.Series(dtype=float)
    if experts is not None:
        totals = totals.reindex(sorted(set(totals.index.tolist()) | set(experts)), fill_value=0)
    frame = pd.DataFrame({"expert": totals.index.to_numpy(dtype=int), "n": totals.to_numpy()})
    return frame.sort_values(["n", "expert"], ascending=[False, True])["expert"].astype(int).tolist()


def expert_shares(load: pd.DataFrame, num_experts: int) -> pd.DataFrame:
    """Every expert id's share of all assignments in `load` (all layers together), busiest first.

    Columns: expert, assignments, share. Ids `load` never mentions are listed with 0, so every expert of the
    checkpoint can be picked (to follow one id through the layers).
    """
    order = expert_order(load, range(num_experts))
    totals = load.groupby("expert")["assignments"].sum() if not load.empty else pd.Series(dtype=float)
    counts = [int(totals.get(e, 0)) for e in order]
    whole = max(1, sum(counts))
    return pd.DataFrame({"expert": order, "assignments": counts, "share": [c / whole for c in counts]})


def top_experts(load: pd.DataFrame, n: int, num_experts: int) -> tuple[list[int], int]:
    """The `n` busiest experts of `load` (all of them when folding would hide fewer than 2), and how many fold.

    Folding a single expert into "other" would hide it for nothing, so up to n + 1 experts are shown whole.
    """
    order = expert_order(load, range(num_experts))
    if len(order) <= n + 1:
        return order, 0
    return order[:n], len(order) - n


def fold_experts(load: pd.DataFrame, keep: Sequence[int], num_experts: int,
                 by: Sequence[str] = ("step",)) -> pd.DataFrame:
    """Per `by` group: the kept experts' rows, plus one OTHER row for every expert not kept.

    Columns: *by, expert, assignments, share (of the group's assignments), per_expert (share divided by
    the number of experts the row stands for, so OTHER is comparable with a single expert), n_experts.
    Kept experts that a group never used get a zero row, so every group has the same rows.
    """
    cols = [*by, "expert", "assignments", "share", "per_expert", "n_experts"]
    if load.empty:
        return pd.DataFrame(columns=cols)
    by = list(by)
    keep_set = set(int(e) for e in keep)
    n_other = num_experts - len(keep_set)
    folded = load.assign(expert=np.where(load["expert"].isin(keep_set), load["expert"], OTHER))
    sums = folded.groupby([*by, "expert"], as_index=False)["assignments"].sum()
    rows = [*keep] + ([OTHER] if n_other > 0 else [])
    groups = load[by].drop_duplicates()
    grid = groups.merge(pd.DataFrame({"expert": rows}), how="cross")
    out = grid.merge(sums, on=[*by, "expert"], how="left").fillna({"assignments": 0})
    totals = out.groupby(by)["assignments"].transform("sum")
    out["share"] = out["assignments"] / totals.where(totals > 0, 1)
    out["n_experts"] = np.where(out["expert"] == OTHER, n_other, 1)
    out["per_expert"] = out["share"] / out["n_experts"]
    return out[cols].reset_index(drop=True)


def layer_ranks(step_load: pd.DataFrame, ranks: int, num_experts: int) -> pd.DataFrame:
    """Per layer: the `ranks` busiest experts of these rows (rank 1 = most assignments), then OTHER.

    Columns: layer, rank (OTHER's rank is ranks + 1), expert, assignments, share (of the layer's
    assignments), n_experts (1, or how many experts OTHER stands for), mean_weight when the input has it.
    Ties are broken by the lower expert id, so the table is deterministic.
    """
    cols = ["layer", "rank", "expert", "assignments", "share", "n_experts"]
    if step_load.empty:
        return pd.DataFrame(columns=cols)
    agg = {"assignments": ("assignments", "sum")}
    weighted = "mean_weight" in step_load
    part = step_load.assign(_w=step_load["mean_weight"] * step_load["assignments"]) if weighted else step_load
    if weighted:
        agg["_w"] = ("_w", "sum")
    per = part.groupby(["layer", "expert"], as_index=False).agg(**agg)
    per = per.sort_values(["layer", "assignments", "expert"], ascending=[True, False, True])
    per["rank"] = per.groupby("layer").cumcount() + 1
    totals = per.groupby("layer")["assignments"].transform("sum")
    per["share"] = per["assignments"] / totals.where(totals > 0, 1)
    shown = per[per["rank"] <= ranks].copy()
    shown["n_experts"] = 1
    rest = per[per["rank"] > ranks].groupby("layer", as_index=False).agg(
        assignments=("assignments", "sum"), share=("share", "sum"), **({"_w": ("_w", "sum")} if weighted else {}))
    layers = pd.DataFrame({"layer": sorted(per["layer"].unique())})
    rest = layers.merge(rest, on="layer", how="left").fillna(0)
    rest["rank"], rest["expert"] = ranks + 1, OTHER
    rest["n_experts"] = num_experts - per.groupby("layer")["rank"].max().clip(upper=ranks).reindex(
        rest["layer"]).to_numpy()
    out = pd.concat([shown, rest], ignore_index=True)
    if weighted:
        out["mean_weight"] = out["_w"] / out["assignments"].where(out["assignments"] > 0, np.nan)
        cols.append("mean_weight")
    out = out.sort_values(["layer", "rank"]).reset_index(drop=True)
    out[["layer", "rank", "expert", "assignments", "n_experts"]] = out[
        ["layer", "rank", "expert", "assignments", "n_experts"]].astype(int)
    return out[cols]


def busiest(step_load: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """The (layer, expert) pairs that took the largest share of their layer's assignments in these rows.

    This is "which experts a step used most": expert ids only mean something within a layer, so each
    expert is ranked by its share of its own layer. Ties: more assignments, then lower layer and id.
    Columns: layer, expert, assignments, share.
    """
    if step_load.empty:
        return pd.DataFrame(columns=["layer", "expert", "assignments", "share"])
    per = step_load.groupby(["layer", "expert"], as_index=False).agg(assignments=("assignments", "sum"))
    totals = per.groupby("layer")["assignments"].transform("sum")
    per["share"] = per["assignments"] / totals.where(totals > 0, 1)
    per = per.sort_values(["share", "assignments", "layer", "expert"], ascending=[False, False, True, True])
    out = per.head(n).reset_index(drop=True)
    out[["layer", "expert", "assignments"]] = out[["layer", "expert", "assignments"]].astype(int)
    return out


def seriate(similarity: np.ndarray) -> np.ndarray:
    """An order of the rows of a symmetric, non-negative similarity matrix that puts similar rows together.

    Spectral seriation: sort by the Fiedler vector of the graph Laplacian (Atkins, Boman & Hendrickson
    1998). Rows with no similarity to anything keep their relative order at the end.
    """
    s = np.asarray(similarity, dtype=np.float64)
    n = s.shape[0]
    if n <= 2:
        return np.arange(n)
    s = (s + s.T) / 2
    np.fill_diagonal(s, 0)
    degree = s.sum(axis=1)
    connected = np.flatnonzero(degree > 0)
    isolated = np.flatnonzero(degree <= 0)
    if connected.size <= 2:
        return np.concatenate([connected, isolated])
    sub = s[np.ix_(connected, connected)]
    d = sub.sum(axis=1)
    inv = 1 / np.sqrt(d)
    laplacian = np.eye(connected.size) - inv[:, None] * sub * inv[None, :]
    _, vectors = np.linalg.eigh(laplacian)
    fiedler = vectors[:, 1] * inv
    if fiedler[0] > fiedler[-1]:  # the sign of an eigenvector is arbitrary: fix it so the order is stable
        fiedler = -fiedler
    return np.concatenate([connected[np.argsort(fiedler, kind="stable")], isolated])


def preference_order(spec: pd.DataFrame) -> list[int]:
    """Experts (columns of a group x expert specialization table) ordered by the group they prefer most.

    Experts preferring the first group come first, strongest preference first, so each group's
    specialists sit together and the heatmap shows a block per group.
    """
    if spec.empty:
        return []
    best = spec.to_numpy(dtype=float).argmax(axis=0)
    strength = spec.to_numpy(dtype=float).max(axis=0)
    frame = pd.DataFrame({"expert": spec.columns.astype(int), "group": best, "strength": strength})
    frame = frame.sort_values(["group", "strength", "expert"], ascending=[True, False, True])
    return frame["expert"].astype(int).tolist()
