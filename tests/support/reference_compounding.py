"""The compounding metrics as they were computed before the corpus aggregates: a window pass over every checked
step per query. Kept as an independent oracle: the aggregate path must give the same numbers to the last digit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from horizonlens.metrics.compounding import _group_expr
from horizonlens.metrics.stats import kaplan_meier, wilson
from horizonlens.query import CorpusStore, TrajectoryFilter, where_sql


def _checks_cte(store: CorpusStore, by: str | None, flt: TrajectoryFilter | None) -> tuple[str, list[Any]]:
    clauses, params = store.filter_clauses(flt)
    extra = where_sql(clauses, "AND")
    sql = f"""
    c AS (
      SELECT s.trajectory_id, {_group_expr(by)} AS grp, s.step,
             row_number() OVER w AS t_idx,
             CAST(NOT s.check_passed AS INTEGER) AS failed,
             coalesce(sum(CAST(NOT s.check_passed AS INTEGER))
                        OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS failed_before,
             lag(CAST(NOT s.check_passed AS INTEGER)) OVER w AS prev_failed,
             t.outcome
      FROM steps s JOIN trajectories t ON s.trajectory_id = t.trajectory_id
      WHERE s.check_passed IS NOT NULL{extra}
      WINDOW w AS (PARTITION BY s.trajectory_id ORDER BY s.step)
    )"""
    return sql, params


def _with_ci(df: pd.DataFrame) -> pd.DataFrame:
    lo, hi = wilson(df["failures"].to_numpy(), df["checks"].to_numpy())
    df["rate"] = np.where(df["checks"] > 0, df["failures"] / df["checks"].where(df["checks"] > 0, 1), np.nan)
    df["lower"], df["upper"] = lo, hi
    return df


def step_error_rate(store: CorpusStore, by: str | None = None, flt: TrajectoryFilter | None = None) -> pd.DataFrame:
    cte, params = _checks_cte(store, by, flt)
    df = store.query(f"WITH {cte} SELECT grp AS group, count(*) AS checks, CAST(sum(failed) AS BIGINT) AS failures, "
                     f"count(DISTINCT trajectory_id) AS trajectories FROM c GROUP BY grp ORDER BY grp",
                     params).to_pandas()
    return _with_ci(df)


def first_failures(store: CorpusStore, by: str | None = None, flt: TrajectoryFilter | None = None) -> pd.DataFrame:
    cte, params = _checks_cte(store, by, flt)
    return store.query(
        f"WITH {cte} SELECT grp, trajectory_id, "
        f"coalesce(min(t_idx) FILTER (WHERE failed = 1), max(t_idx)) AS duration, "
        f"CAST(bool_or(failed = 1) AS INTEGER) AS event FROM c GROUP BY grp, trajectory_id", params).to_pandas()


def kaplan_meier_per_group(store: CorpusStore, by: str | None = None,
                           flt: TrajectoryFilter | None = None) -> pd.DataFrame:
    """Kaplan–Meier over one row per trajectory (no counts), per group."""
    frames = []
    for grp, part in first_failures(store, by, flt).groupby("grp", sort=True):
        km = kaplan_meier(part["duration"].to_numpy(), part["event"].to_numpy())
        km.insert(0, "group", grp)
        frames.append(km)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def self_conditioning(store: CorpusStore, by: str | None = None, flt: TrajectoryFilter | None = None,
                      max_j: int = 4) -> pd.DataFrame:
    cte, params = _checks_cte(store, by, flt)
    df = store.query(f"WITH {cte} SELECT grp AS group, least(failed_before, ?) AS j, count(*) AS checks, "
                     f"CAST(sum(failed) AS BIGINT) AS failures FROM c GROUP BY ALL ORDER BY grp, j",
                     [*params, max_j]).to_pandas()
    return _with_ci(df)


def previous_step(store: CorpusStore, by: str | None = None, flt: TrajectoryFilter | None = None) -> pd.DataFrame:
    cte, params = _checks_cte(store, by, flt)
    df = store.query(f"WITH {cte} SELECT grp AS group, CASE prev_failed WHEN 1 THEN 'previous failed' "
                     f"ELSE 'previous passed' END AS previous, count(*) AS checks, "
                     f"CAST(sum(failed) AS BIGINT) AS failures "
                     f"FROM c WHERE prev_failed IS NOT NULL GROUP BY ALL ORDER BY grp, previous", params).to_pandas()
    return _with_ci(df)


def recovery(store: CorpusStore, by: str | None = None, flt: TrajectoryFilter | None = None) -> pd.DataFrame:
    clauses, params = store.filter_clauses(flt)
    extra = where_sql(clauses, "AND")
    return store.query(f"""
    WITH a AS (
      SELECT s.trajectory_id, {_group_expr(by)} AS grp, s.step, s.check_passed, t.outcome,
             s.tool_calls[1].name AS tool,
             lead(s.check_passed) OVER w AS next_passed,
             lead(s.tool_calls[1].name, 1) OVER w AS tool1, lead(s.check_passed, 1) OVER w AS pass1,
             lead(s.tool_calls[1].name, 2) OVER w AS tool2, lead(s.check_passed, 2) OVER w AS pass2
      FROM steps s JOIN trajectories t ON s.trajectory_id = t.trajectory_id
      WHERE s.source = 'agent'{extra}
      WINDOW w AS (PARTITION BY s.trajectory_id ORDER BY s.step)
    ), f AS (
      SELECT *, (tool1 = tool OR tool2 = tool) AS retried,
             ((tool1 = tool AND pass1) OR (tool2 = tool AND pass2)) AS retry_passed
      FROM a WHERE check_passed = false
    )
    SELECT grp AS group, count(*) AS failed_checks,
           count(*) FILTER (WHERE next_passed) AS next_check_passed,
           count(*) FILTER (WHERE retried) AS retried, count(*) FILTER (WHERE retry_passed) AS recovered,
           count(DISTINCT trajectory_id) AS runs_with_failure,
           count(DISTINCT trajectory_id) FILTER (WHERE outcome = 'success') AS runs_with_failure_succeeded
    FROM f GROUP BY grp ORDER BY grp""", params).to_pandas()


def by_group(store: CorpusStore, column: str) -> pd.DataFrame:
    return store.query(
        f"WITH s AS (SELECT trajectory_id, count(check_passed) AS checks, "
        f"count(*) FILTER (WHERE check_passed = false) AS failed FROM steps GROUP BY trajectory_id) "
        f"SELECT t.{column} AS {column}, count(*) AS trajectories, "
        f"avg(CASE WHEN outcome = 'success' THEN 1.0 WHEN outcome = 'failure' THEN 0.0 END) AS success_rate, "
        f"sum(s.failed) / nullif(sum(s.checks), 0) AS failed_check_rate, median(t.n_steps) AS median_steps, "
        f"sum(t.n_tokens)::BIGINT AS tokens FROM trajectories t LEFT JOIN s USING (trajectory_id) "
        f"GROUP BY t.{column} ORDER BY t.{column}").to_pandas()


def tools(store: CorpusStore) -> list[str]:
    table = store.query("SELECT DISTINCT unnest(list_transform(s.tool_calls, lambda c: c.name)) AS name FROM steps s "
                        "ORDER BY name NULLS LAST")
    return [n for n in table.column("name").to_pylist() if n is not None]


def decisive_predictions(store: CorpusStore) -> pd.DataFrame:
    return store.query("""
      SELECT s.trajectory_id, min(s.step) FILTER (WHERE s.is_decisive_error) AS decisive,
             min(s.step) FILTER (WHERE s.check_passed = false) AS first_failed_check,
             max(s.step) FILTER (WHERE s.check_passed = false) AS last_failed_check
      FROM steps s GROUP BY s.trajectory_id HAVING bool_or(s.is_decisive_error) ORDER BY 1""").to_pandas()
