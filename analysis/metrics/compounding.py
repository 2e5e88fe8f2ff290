"""Error compounding along the horizon: where checks fail and whether failures beget failures.

Every function takes the corpus store, an optional facet (`by`: domain, agent, teacher, source)
and an optional TrajectoryFilter, and returns a tidy pandas DataFrame with a `group` column
("all" without a facet). Aggregations run in DuckDB; only per-group or per-trajectory rows come
back. The horizon axis `t` counts checked steps (1 = the first step with a check). Formulas and
sources: docs/metrics.md.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from horizonlens.corpus.filters import TrajectoryFilter, where_sql
from horizonlens.corpus.quoting import quote_ident
from horizonlens.corpus.store import CorpusStore
from horizonlens.metrics.stats import fit_logistic, kaplan_meier, pass_hat_k, wilson

FACETS = ("domain", "agent", "teacher", "source", "label_category")
# A run's label categories, joined: runs labelled "failure" and "root_cause" form the group "failure + root_cause".
LABEL_CATEGORY_SQL = ("coalesce((SELECT string_agg(DISTINCT a.category, ' + ' ORDER BY a.category) FROM annotations a "
                      "WHERE a.trajectory_id = t.trajectory_id), '(no label)')")


def _group_expr(by: str | None) -> str:
    if by is None:
        return "'all'"
    if by not in FACETS:
        raise ValueError(f"cannot facet by {by!r}; choose one of {', '.join(FACETS)}")
    if by == "label_category":
        return LABEL_CATEGORY_SQL
    return f"coalesce(CAST(t.{quote_ident(by)} AS VARCHAR), '(none)')"


def _checks_cte(store: CorpusStore, by: str | None, flt: TrajectoryFilter | None) -> tuple[str, list[Any]]:
    """A CTE `c` with one row per checked step: group, t, failed, failed_before, prev_failed."""
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


def _with_ci(df: pd.DataFrame, k: str = "failures", n: str = "checks", rate: str = "rate") -> pd.DataFrame:
    lo, hi = wilson(df[k].to_numpy(), df[n].to_numpy())
    df[rate] = np.where(df[n] > 0, df[k] / df[n].where(df[n] > 0, 1), np.nan)
    df["lower"], df["upper"] = lo, hi
    return df


def step_error_rate(store: CorpusStore, by: str | None = None, flt: TrajectoryFilter | None = None,
                    levels: tuple[float, ...] = (0.5, 0.8)) -> pd.DataFrame:
    """p̂ = failed checks / checks, Wilson 95% interval, and horizons H_s = ln s / ln(1 − p̂)."""
    cte, params = _checks_cte(store, by, flt)
    df = store.query(f"WITH {cte} SELECT grp AS group, count(*) AS checks, CAST(sum(failed) AS BIGINT) AS failures, "
                     f"count(DISTINCT trajectory_id) AS trajectories FROM c GROUP BY grp ORDER BY grp",
                     params).to_pandas()
    df = _with_ci(df)
    for s in levels:
        df[f"horizon_{int(s * 100)}"] = [horizon(p, s) for p in df["rate"]]
    return df


def horizon(p: float, s: float) -> float | None:
    """Checks until the chance of a clean run falls to s if errors were independent at rate p."""
    if p is None or not np.isfinite(p) or p <= 0:
        return None  # no failures: the baseline never falls
    if p >= 1:
        return 0.0
    return math.log(s) / math.log(1 - p)


def survival(store: CorpusStore, by: str | None = None, flt: TrajectoryFilter | None = None) -> pd.DataFrame:
    """Kaplan–Meier survival to the first failed check, runs ending earlier censored, beside two baselines.

    Per t: survival with its interval and the hazard; the independent-errors baseline (1 − p̂)^t; and the
    same at the clean-run rate, (1 − p₀)^t with p₀ = P(fail | no earlier failure).
    """
    cte, params = _checks_cte(store, by, flt)
    per_traj = store.query(
        f"WITH {cte} SELECT grp, trajectory_id, "
        f"coalesce(min(t_idx) FILTER (WHERE failed = 1), max(t_idx)) AS duration, "
        f"CAST(bool_or(failed = 1) AS INTEGER) AS event FROM c GROUP BY grp, trajectory_id", params).to_pandas()
    rates = step_error_rate(store, by, flt).set_index("group")["rate"]
    sc = self_conditioning(store, by, flt)
    clean = sc[sc["j"] == 0].set_index("group")["rate"]  # P(fail | no earlier failure): the first-failure rate
    frames = []
    for grp, part in per_traj.groupby("grp", sort=True):
        km = kaplan_meier(part["duration"].to_numpy(), part["event"].to_numpy())
        p = float(rates.get(grp, np.nan))
        p0 = float(clean.get(grp, np.nan))
        km["baseline"] = (1 - p) ** km["t"] if np.isfinite(p) else np.nan
        # independent errors at the clean-run rate: the right yardstick for *first* failures, since p̂ also
        # averages in the raised rates after a failure
        km["baseline_clean"] = (1 - p0) ** km["t"] if np.isfinite(p0) else np.nan
        km.insert(0, "group", grp)
        frames.append(km)
    cols = ["group", "t", "at_risk", "events", "censored", "survival", "lower", "upper", "hazard", "baseline",
            "baseline_clean"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


def self_conditioning(store: CorpusStore, by: str | None = None, flt: TrajectoryFilter | None = None,
                      max_j: int = 4) -> pd.DataFrame:
    """P(check fails | j earlier failed checks in the run), j = 0..max_j (the last bin is j ≥ max_j)."""
    cte, params = _checks_cte(store, by, flt)
    df = store.query(f"WITH {cte} SELECT grp AS group, least(failed_before, ?) AS j, count(*) AS checks, "
                     f"CAST(sum(failed) AS BIGINT) AS failures FROM c GROUP BY ALL ORDER BY grp, j",
                     [*params, max_j]).to_pandas()
    df = _with_ci(df)
    base = df[df["j"] == 0].set_index("group")["rate"]
    df["ratio_to_j0"] = [r / base.get(g) if base.get(g) else np.nan
                         for g, r in zip(df["group"], df["rate"], strict=True)]
    return df


def previous_step(store: CorpusStore, by: str | None = None, flt: TrajectoryFilter | None = None) -> pd.DataFrame:
    """P(fail | previous check failed) vs P(fail | previous check passed)."""
    cte, params = _checks_cte(store, by, flt)
    df = store.query(f"WITH {cte} SELECT grp AS group, CASE prev_failed WHEN 1 THEN 'previous failed' "
                     f"ELSE 'previous passed' END AS previous, count(*) AS checks, "
                     f"CAST(sum(failed) AS BIGINT) AS failures "
                     f"FROM c WHERE prev_failed IS NOT NULL GROUP BY ALL ORDER BY grp, previous", params).to_pandas()
    return _with_ci(df)


def recovery(store: CorpusStore, by: str | None = None, flt: TrajectoryFilter | None = None) -> pd.DataFrame:
    """What follows a failed check: a passed next check, a retry, a recovery, a run that still succeeds.

    A retry is the same tool called again within two agent steps; a recovery is a retry that passes.
    """
    clauses, params = store.filter_clauses(flt)
    extra = where_sql(clauses, "AND")
    df = store.query(f"""
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
    n = df["failed_checks"].where(df["failed_checks"] > 0, 1)
    df["next_check_pass_rate"] = df["next_check_passed"] / n
    df["retry_rate"] = df["retried"] / n
    df["recovery_rate"] = df["recovered"] / n
    runs = df["runs_with_failure"].where(df["runs_with_failure"] > 0, 1)
    df["success_after_failure"] = df["runs_with_failure_succeeded"] / runs
    df["lower"], df["upper"] = wilson(df["recovered"].to_numpy(), df["failed_checks"].to_numpy())
    return df


def success_vs_length(store: CorpusStore, by: str | None = None, flt: TrajectoryFilter | None = None,
                      quantiles: tuple[float, ...] = (0.5, 0.8), n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """Logistic fit of success on log2(step count); step counts at 50%/80% success with bootstrap CIs.

    Returns {"fits": DataFrame per group (intercept, slope, n, steps_at_50, its CI, ...),
             "points": DataFrame of (group, n_steps, success) for plotting}.
    """
    clauses, params = store.filter_clauses(flt)
    extra = where_sql(clauses, "AND")
    pts = store.query(f"SELECT {_group_expr(by)} AS group, t.n_steps, "
                      f"CAST(t.outcome = 'success' AS INTEGER) AS success "
                      f"FROM trajectories t WHERE t.outcome IN ('success', 'failure') AND t.n_steps > 0{extra}",
                      params).to_pandas()
    rng = np.random.default_rng(seed)
    rows = []
    for grp, part in pts.groupby("group", sort=True):
        x = np.log2(part["n_steps"].to_numpy(dtype=float))
        y = part["success"].to_numpy(dtype=float)
        fit = fit_logistic(x, y)
        row: dict[str, Any] = {"group": grp, "n": len(part), "success_rate": float(y.mean()),
                               "intercept": fit.intercept, "slope": fit.slope, "fitted": fit.converged}
        boots: dict[float, list[float]] = {q: [] for q in quantiles}  # quantile -> bootstrap step counts
        if fit.converged:
            for _ in range(n_boot):
                idx = rng.integers(0, len(x), len(x))
                b = fit_logistic(x[idx], y[idx])
                for q in quantiles:
                    v = b.x_at(q)
                    if v is not None and np.isfinite(v) and b.slope < 0:
                        boots[q].append(2 ** v)
        for q in quantiles:
            xq = fit.x_at(q) if fit.slope < 0 else None  # only a decreasing fit has a horizon
            key = f"steps_at_{int(q * 100)}"
            row[key] = float(2 ** xq) if xq is not None and np.isfinite(xq) and xq < 64 else None
            ok = boots[q]
            row[f"{key}_lower"] = float(np.percentile(ok, 2.5)) if len(ok) >= 20 else None
            row[f"{key}_upper"] = float(np.percentile(ok, 97.5)) if len(ok) >= 20 else None
        rows.append(row)
    return {"fits": pd.DataFrame(rows), "points": pts}


def pass_k(store: CorpusStore, by: str | None = None, flt: TrajectoryFilter | None = None) -> pd.DataFrame:
    """pass^k over the trials of each task (unbiased estimator), k = 1..max trials."""
    clauses, params = store.filter_clauses(flt)
    extra = where_sql(clauses, "AND")
    per_task = store.query(
        f"SELECT {_group_expr(by)} AS group, t.task_id, count(*) AS n, "
        f"CAST(sum(CAST(t.outcome = 'success' AS INTEGER)) AS BIGINT) AS c FROM trajectories t "
        f"WHERE t.task_id IS NOT NULL AND t.outcome IN ('success', 'failure'){extra} GROUP BY ALL", params).to_pandas()
    frames = []
    for grp, part in per_task.groupby("group", sort=True):
        df = pass_hat_k(part)
        df.insert(0, "group", grp)
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["group", "k", "pass_hat_k", "tasks"])
    return pd.concat(frames, ignore_index=True)
