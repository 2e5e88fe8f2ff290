"""Early warning: do the model's own signals rise *before* a failed check, early enough to act?

For each agent step t that has a replay and at least one checked step among the steps t+1..t+k (step
indices of the trajectory, any source), the event is "a check fails within the next k steps": 1 if any
check in t+1..t+k failed, else 0. Each signal's value at t is scored as a predictor of that event by its
AUROC (Mann–Whitney: the chance that a random positive step scores higher than a random negative one,
ties counting ½), with a 95% bootstrap interval that resamples *trajectories* (steps of one run are not
independent). Signals (from the replay of step t):

    surprisal       the step's mean surprisal of its agent-written tokens (replay_steps)
    max_surprisal   the step's largest token surprisal
    entropy         the step's mean router entropy
    drift           routing drift: Jensen–Shannon distance of the step's expert load from the load of the
                    trajectory's first agent steps, averaged over layers (metrics/routing.py)
    drift_L<layer>  the same for one MoE layer

and two baselines that need no model: `position` (the step index t: later steps fail more) and
`previous_failed` (1 if the latest check at or before t failed: failures cluster).

Lead time: per failed run, the steps from the first step where the signal reaches its own 90th percentile
over the run's replayed agent steps to the run's first failed check (negative: the signal crossed only
after the failure); the median over runs is reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from horizonlens.metrics.routing import routing_drift
from horizonlens.query.filters import TrajectoryFilter, where_sql
from horizonlens.query.store import CorpusStore

DEFAULT_K = 3
SIGNALS = ("surprisal", "max_surprisal", "entropy", "drift")  # then drift_L<layer>, one per MoE layer
BASELINES = ("position", "previous_failed")
LEAD_PERCENTILE = 90.0
COLUMNS = ["signal", "kind", "k", "auroc", "lower", "upper", "n_pos", "n_neg", "trajectories", "median_lead_steps",
           "lead_runs"]


def auroc(scores: Any, labels: Any, weights: Any = None) -> float:
    """Mann–Whitney AUROC with ties counted ½: P(s⁺ > s⁻) + ½ P(s⁺ = s⁻); NaN without both classes.

    `weights` (one per row, e.g. bootstrap multiplicities) weigh each positive–negative pair by the product.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    w = np.ones(len(s)) if weights is None else np.asarray(weights, dtype=np.float64)
    _, inv = np.unique(s, return_inverse=True)
    return _auroc_binned(inv, y, w)


def _auroc_binned(inv: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """AUROC from each row's rank bin among the distinct scores (precomputed once for all bootstrap draws)."""
    n_bins = int(inv.max()) + 1 if inv.size else 0
    pos = np.bincount(inv, weights=w * y, minlength=n_bins)
    neg = np.bincount(inv, weights=w * ~y, minlength=n_bins)
    w_pos, w_neg = pos.sum(), neg.sum()
    if w_pos <= 0 or w_neg <= 0:
        return float("nan")
    below = np.cumsum(neg) - neg  # negative weight strictly below each distinct score
    return float((pos * (below + 0.5 * neg)).sum() / (w_pos * w_neg))


def step_table(store: CorpusStore, checkpoint_id: str, k: int = DEFAULT_K, flt: TrajectoryFilter | None = None,
               drift: bool = True, trajectory_ids: list[str] | None = None) -> pd.DataFrame:
    """One row per replayed agent step: the signals and baselines at t, checks and failures in t+1..t+k, the event.

    `label` is 1/0 where some step in t+1..t+k has a check, else missing (the step is not scored but still
    counts for lead times). `trajectory_ids`: only these replayed runs (metrics/replay_set.py), else all.
    """
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 1000:
        raise ValueError("k is a whole number of steps from 1 to 1000")
    if checkpoint_id not in store.replay_checkpoints:
        return pd.DataFrame()
    clauses, params = store.filter_clauses(flt)
    if trajectory_ids is not None:
        clauses = [*clauses, "list_contains(?, t.trajectory_id)"]
        params = [*params, list(trajectory_ids)]
    # k is a checked int: the window frame needs a literal
    frame = store.query(f"""
      WITH s AS (
        SELECT s.trajectory_id, s.step, s.source,
               count(s.check_passed) OVER ahead AS checks_ahead,
               count(*) FILTER (WHERE s.check_passed = false) OVER ahead AS failed_ahead,
               last_value(s.check_passed IGNORE NULLS) OVER upto AS last_check
        FROM steps s
        WHERE s.trajectory_id IN (SELECT DISTINCT trajectory_id FROM replay_steps WHERE checkpoint_id = ?)
        WINDOW ahead AS (PARTITION BY s.trajectory_id ORDER BY s.step RANGE BETWEEN 1 FOLLOWING AND {int(k)} FOLLOWING),
               upto AS (PARTITION BY s.trajectory_id ORDER BY s.step ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))
      SELECT s.trajectory_id, s.step, r.surprisal, r.max_surprisal, r.entropy, s.step AS position,
             CAST(coalesce(s.last_check = false, false) AS INTEGER) AS previous_failed,
             s.checks_ahead, s.failed_ahead,
             CASE WHEN s.checks_ahead > 0 THEN CAST(s.failed_ahead > 0 AS INTEGER) END AS label
      FROM s JOIN replay_steps r ON r.trajectory_id = s.trajectory_id AND r.step = s.step AND r.checkpoint_id = ?
      JOIN trajectories t ON t.trajectory_id = s.trajectory_id
      WHERE s.source = 'agent'{where_sql(clauses, "AND")}
      ORDER BY s.trajectory_id, s.step""", [checkpoint_id, checkpoint_id, *params]).to_pandas()
    for col in ("surprisal", "max_surprisal", "entropy"):
        frame[col] = frame[col].astype("float64")
    if drift and not frame.empty and "routing" in store.replay_views:
        parts = []
        for tid in frame["trajectory_id"].unique():
            d = routing_drift(store, checkpoint_id, str(tid), per_layer=True)
            if not d.empty:
                d.insert(0, "trajectory_id", tid)
                parts.append(d)
        if parts:
            frame = frame.merge(pd.concat(parts, ignore_index=True), on=["trajectory_id", "step"], how="left")
    return frame


def signal_names(frame: pd.DataFrame) -> list[str]:
    """The signals a step table holds, in report order (per-layer drift by layer number), then the baselines."""
    layers = sorted((c for c in frame.columns if c.startswith("drift_L")), key=lambda c: int(c[len("drift_L"):]))
    return [s for s in SIGNALS if s in frame] + layers + [b for b in BASELINES if b in frame]


def first_failures(store: CorpusStore, trajectory_ids: list[str]) -> dict[str, int]:
    """The first failed check's step of each of these trajectories that has one."""
    if not trajectory_ids:
        return {}
    rows = store.query(f"SELECT trajectory_id, min(step) AS f FROM steps WHERE check_passed = false AND trajectory_id "
                       f"IN ({', '.join('?' for _ in trajectory_ids)}) GROUP BY 1", trajectory_ids).to_pylist()
    return {r["trajectory_id"]: int(r["f"]) for r in rows}


def lead_times(frame: pd.DataFrame, signal: str, failures: dict[str, int],
               percentile: float = LEAD_PERCENTILE) -> list[int]:
    """Per failed run: its first failed check minus the first step where the signal reaches its run's percentile."""
    out = []
    for tid, part in frame.groupby("trajectory_id", sort=True):
        first_fail = failures.get(str(tid))
        values = part[signal].to_numpy(dtype=np.float64)
        ok = ~np.isnan(values)
        if first_fail is None or not ok.any():
            continue
        threshold = np.percentile(values[ok], percentile)
        crossing = int(part["step"].to_numpy()[ok][values[ok] >= threshold].min())
        out.append(first_fail - crossing)
    return out


def early_warning(store: CorpusStore, checkpoint_id: str, k: int = DEFAULT_K, flt: TrajectoryFilter | None = None,
                  n_boot: int = 1000, seed: int = 0, drift: bool = True,
                  trajectory_ids: list[str] | None = None) -> pd.DataFrame:
    """AUROC of each signal and baseline for "a check fails within the next k steps", with trajectory-bootstrap CIs.

    One row per signal: signal, kind (signal / baseline), k, auroc, lower, upper (95% percentile interval over
    `n_boot` resamples of trajectories), n_pos, n_neg, trajectories, median_lead_steps and lead_runs.
    """
    frame = step_table(store, checkpoint_id, k, flt, drift, trajectory_ids)
    if frame.empty:
        return pd.DataFrame(columns=COLUMNS)
    scored = frame[frame["label"].notna()]
    failures = first_failures(store, sorted(frame["trajectory_id"].unique().tolist()))
    groups, group_idx = np.unique(scored["trajectory_id"].to_numpy(), return_inverse=True)
    rng = np.random.default_rng(seed)
    # the same resamples of trajectories for every signal, so their intervals are comparable
    draws = rng.multinomial(len(groups), np.full(len(groups), 1 / len(groups)), size=n_boot) if len(groups) else None
    rows = []
    for name in signal_names(frame):
        values = scored[name].to_numpy(dtype=np.float64)
        ok = ~np.isnan(values)
        y = scored["label"].to_numpy()[ok].astype(bool)
        _, inv = np.unique(values[ok], return_inverse=True)
        point = _auroc_binned(inv, y, np.ones(len(y)))
        lower = upper = None
        if draws is not None and np.isfinite(point):
            boots = np.array([_auroc_binned(inv, y, draw[group_idx[ok]].astype(np.float64)) for draw in draws])
            boots = boots[np.isfinite(boots)]
            if len(boots) >= 20:
                lower, upper = (float(v) for v in np.percentile(boots, [2.5, 97.5]))
        leads = lead_times(frame, name, failures)
        rows.append({"signal": name, "kind": "baseline" if name in BASELINES else "signal", "k": int(k),
                     "auroc": point if np.isfinite(point) else None, "lower": lower, "upper": upper,
                     "n_pos": int(y.sum()), "n_neg": int((~y).sum()),
                     "trajectories": int(len(np.unique(group_idx[ok]))),
                     "median_lead_steps": float(np.median(leads)) if leads else None, "lead_runs": len(leads)})
    return pd.DataFrame(rows, columns=COLUMNS)
