"""Decisive-error attribution (Who&When): how often a predictor names the annotated root-cause step."""

from __future__ import annotations

from typing import Any

import pandas as pd

from horizonlens.corpus.filters import TrajectoryFilter, where_sql
from horizonlens.corpus.store import CorpusStore

PREDICTORS = ("first_failed_check", "last_failed_check", "highest_surprisal")


def predictions(store: CorpusStore, checkpoint_id: str | None = None,
                flt: TrajectoryFilter | None = None) -> pd.DataFrame:
    """Per failed trajectory with an annotated decisive step: the step each baseline predicts."""
    clauses, params = store.filter_clauses(flt)
    extra = where_sql(clauses, "AND")
    surprisal_join, surprisal_col = "", "NULL AS highest_surprisal"
    if checkpoint_id and "replay_steps" in _views(store):
        surprisal_join = ("LEFT JOIN (SELECT trajectory_id, arg_max(step, surprisal) AS hs FROM replay_steps "
                          "WHERE checkpoint_id = ? AND surprisal IS NOT NULL GROUP BY trajectory_id) r "
                          "ON r.trajectory_id = d.trajectory_id")
        surprisal_col = "r.hs AS highest_surprisal"
        params = [checkpoint_id, *params]
    store.aggregates()  # the per-trajectory decisive and failed-check steps, instead of a pass over every step
    return store.query(f"""
    WITH d AS (
      SELECT a.trajectory_id, a.decisive_step AS decisive, a.first_failed_check, a.last_failed_check
      FROM agg_trajectories a WHERE a.has_decisive
    )
    SELECT d.trajectory_id, t.domain, t.agent, d.decisive, d.first_failed_check, d.last_failed_check, {surprisal_col}
    FROM d {surprisal_join} JOIN trajectories t ON t.trajectory_id = d.trajectory_id
    WHERE t.outcome = 'failure'{extra} ORDER BY d.trajectory_id""", params).to_pandas()


def _views(store: CorpusStore) -> set[str]:
    return set(store.query("SELECT view_name FROM duckdb_views() WHERE NOT internal").column(0).to_pylist())


def accuracy(preds: pd.DataFrame, tolerances: tuple[int, ...] = (0, 1, 2, 5)) -> pd.DataFrame:
    """Exact and ±k accuracy of each predictor against the annotated step (no prediction = wrong)."""
    rows: list[dict[str, Any]] = []
    n = len(preds)
    for name in PREDICTORS:
        if name not in preds or preds[name].isna().all():
            continue
        diff = (preds[name] - preds["decisive"]).abs()
        row: dict[str, Any] = {"predictor": name, "trajectories": n, "predicted": int(preds[name].notna().sum())}
        for k in tolerances:
            row["exact" if k == 0 else f"within_{k}"] = float((diff <= k).sum() / n) if n else None
        rows.append(row)
    return pd.DataFrame(rows)
