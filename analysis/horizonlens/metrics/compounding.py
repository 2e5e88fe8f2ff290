"""Error compounding along the horizon: where checks fail and whether failures beget failures.

Every function takes the corpus store, an optional facet (`by`: domain, agent, teacher, source)
and an optional TrajectoryFilter, and returns a tidy pandas DataFrame with a `group` column
("all" without a facet). The horizon axis `t` counts checked steps (1 = the first step with a check).
Formulas and sources: docs/metrics.md.

The per-step window pass (checked steps in order, earlier failures, the previous check, what follows a
failed check) is done once per trajectory by the corpus aggregates (`corpus/aggregates.py`); every metric
here is one GROUP BY over those per-trajectory rows joined with `trajectories t`, which is where the facet
and the filter apply. `store.aggregates()` provides them from their files when they are up to date, and
otherwise computes them once from the steps with the same SQL, so there is one code path either way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from horizonlens.derived.aggregates import cells
from horizonlens.metrics.stats import fit_logistic, fit_logistic_many, kaplan_meier, pass_hat_k, wilson
from horizonlens.query.filters import TrajectoryFilter, where_sql
from horizonlens.query.store import CorpusStore
from horizonlens.storage.quoting import quote_ident

FACETS = ("domain", "agent", "teacher", "source", "label_category")
# A run's label categories, joined: runs labelled "failure" and "root_cause" form the group "failure + root_cause".
LABEL_CATEGORY_SQL = ("coalesce((SELECT string_agg(DISTINCT a.category, ' + ' ORDER BY a.category) FROM annotations a "
                      "WHERE a.trajectory_id = t.trajectory_id), '(no label)')")


def _group_expr(by: str | None) -> str:
    """The SQL for a trajectory's group under a facet (over `trajectories t`); facets are an allow-list."""
    if by is None:
        return "'all'"
    if by not in FACETS:
        raise ValueError(f"cannot facet by {by!r}; choose one of {', '.join(FACETS)}")
    if by == "label_category":
        return LABEL_CATEGORY_SQL
    return f"coalesce(CAST(t.{quote_ident(by)} AS VARCHAR), '(none)')"


def _cells(store: CorpusStore, kind: str, flt: TrajectoryFilter | None, by: str | None = None
           ) -> tuple[str, list[Any]]:
    """`FROM <cells> t WHERE ...` for one kind of aggregate cells (corpus/aggregates.py), and its parameters.

    A filter on facet columns only is answered from the precomputed cube (a few thousand rows, whatever the corpus
    size); any other filter from one row per trajectory. Both have the same columns, so the metric's SQL is the
    same. The caller's SQL continues with `AND ...` conditions, then GROUP BY. A run's label categories are not
    a cube dimension: faceting by them reads one row per trajectory.
    """
    store.aggregates()
    clauses, params = store.filter_clauses(flt)
    relation = cells(kind, cube=(flt is None or flt.facet_only()) and by != "label_category")
    return f"FROM {relation} t WHERE true{where_sql(clauses, 'AND')}", params


def _with_ci(df: pd.DataFrame, k: str = "failures", n: str = "checks", rate: str = "rate") -> pd.DataFrame:
    lo, hi = wilson(df[k].to_numpy(), df[n].to_numpy())
    df[rate] = np.where(df[n] > 0, df[k] / df[n].where(df[n] > 0, 1), np.nan)
    df["lower"], df["upper"] = lo, hi
    return df


def step_error_rate(store: CorpusStore, by: str | None = None, flt: TrajectoryFilter | None = None,
                    levels: tuple[float, ...] = (0.5, 0.8)) -> pd.DataFrame:
    """p̂ = failed checks / checks, Wilson 95% interval, and horizons H_s = ln s / ln(1 − p̂)."""
    src, params = _cells(store, "trajectories", flt, by)
    df = store.query(f"SELECT {_group_expr(by)} AS group, CAST(sum(t.checks) AS BIGINT) AS checks, "
                     f"CAST(sum(t.failures) AS BIGINT) AS failures, CAST(sum(t.with_checks) AS BIGINT) AS trajectories "
                     f"{src} GROUP BY 1 HAVING sum(t.with_checks) > 0 ORDER BY 1", params).to_pandas()
    df = _with_ci(df)
    for s in levels:
        df[f"horizon_{int(s * 100)}"] = [horizon(p, s) for p in df["rate"]]
    return df


def checks_per_step(store: CorpusStore, by: str | None = None, flt: TrajectoryFilter | None = None) -> pd.DataFrame:
    """Per group: checks, steps, and checks per step (the exchange rate between the two horizon units)."""
    src, params = _cells(store, "trajectories", flt, by)
    df = store.query(f"SELECT {_group_expr(by)} AS group, CAST(sum(t.checks) AS BIGINT) AS checks, "
                     f"CAST(sum(t.n_steps * t.trajectories) AS BIGINT) AS steps {src} GROUP BY 1 ORDER BY 1",
                     params).to_pandas()
    df["checks_per_step"] = df["checks"] / df["steps"].where(df["steps"] > 0)
    return df


def horizons(rate: pd.DataFrame, km: pd.DataFrame, fits: pd.DataFrame, per_step: pd.DataFrame,
             levels: tuple[int, ...] = (50, 80)) -> pd.DataFrame:
    """Every horizon of the page in both units, side by side: checks and steps, converted at the group's rate.

    Three horizons per level s, which measure different things:
    - *independent errors*: H_s = ln s / ln(1 − p̂) checks until a clean run (no failed check) has chance s, if
      every check failed independently at the overall rate p̂ (`step_error_rate`);
    - *first failed check, observed*: the checked step t at which the Kaplan–Meier survival to the first failed
      check falls to s (`survival`; none if it never does);
    - *success*: the step count at which the logistic fit of success on log2 steps predicts s (`success_vs_length`).
      Runs survive failed checks (recovery), so this one is usually the longest.
    A horizon known in checks is divided by the group's checks per step to give steps, and one known in steps is
    multiplied by it: an average over the selection, not a per-run conversion.
    """
    rate_of = per_step.set_index("group")["checks_per_step"]
    rows = []
    for grp in sorted(set(rate["group"]) | set(fits.get("group", pd.Series(dtype=str)))):
        cps = rate_of.get(grp)
        cps = float(cps) if cps is not None and np.isfinite(cps) and cps > 0 else None
        h = rate[rate["group"] == grp]
        curve = km[km["group"] == grp] if not km.empty else km
        fit = fits[fits["group"] == grp] if not fits.empty else fits
        for s in levels:
            in_checks = {"independent errors (H)": h[f"horizon_{s}"].iloc[0] if not h.empty else None,
                         "first failed check, observed": _crossing(curve, s / 100)}
            for name, checks in in_checks.items():
                rows.append(_horizon_row(grp, s, name, "first failed check", checks=checks, cps=cps))
            steps = fit[f"steps_at_{s}"].iloc[0] if not fit.empty else None
            rows.append(_horizon_row(grp, s, "success vs step count (fit)", "success", steps=steps, cps=cps))
    return pd.DataFrame(rows, columns=["group", "level", "horizon", "measures", "checks", "steps",
                                       "checks_per_step"])


def _crossing(km: pd.DataFrame, s: float) -> float | None:
    """The first checked step t at which the survival curve is at or below s (None if it never gets there)."""
    below = km[km["survival"] <= s] if not km.empty else km
    return float(below["t"].iloc[0]) if not below.empty else None


def _horizon_row(group: str, level: int, name: str, measures: str, checks: Any = None, steps: Any = None,
                 cps: float | None = None) -> dict[str, Any]:
    """One horizon in both units; the missing unit converted at `cps` checks per step."""
    def known(v: Any) -> float | None:
        return float(v) if v is not None and np.isfinite(v) else None

    checks, steps = known(checks), known(steps)
    if checks is not None and steps is None and cps:
        steps = checks / cps
    elif steps is not None and checks is None and cps:
        checks = steps * cps
    return {"group": group, "level": f"{level}%", "horizon": name, "measures": measures, "checks": checks,
            "steps": steps, "checks_per_step": cps}


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
    src, params = _cells(store, "first_failure", flt, by)
    # runs with the same (group, first-failure time, event) are interchangeable: Kaplan–Meier takes their count
    per_time = store.query(f"SELECT {_group_expr(by)} AS grp, t.duration, t.event, "
                           f"CAST(sum(t.runs) AS BIGINT) AS runs, CAST(sum(t.checks) AS BIGINT) AS checks, "
                           f"CAST(sum(t.failures) AS BIGINT) AS failures {src} GROUP BY ALL ORDER BY ALL",
                           params).to_pandas()
    # p̂ (all checks) and p₀ = P(fail | no earlier failure): the checks with no failure before them are a run's
    # first `duration` checks, of which `event` failed, so p₀ = Σ event / Σ duration (= self_conditioning at j=0)
    per_time["clean_checks"] = per_time["duration"] * per_time["runs"]
    per_time["clean_failures"] = per_time["event"] * per_time["runs"]
    totals = per_time.groupby("grp", sort=True)[["checks", "failures", "clean_checks", "clean_failures"]].sum()
    rates = _with_ci(totals.reset_index())["rate"].set_axis(totals.index)
    clean = _with_ci(totals.reset_index(), "clean_failures", "clean_checks")["rate"].set_axis(totals.index)
    frames = []
    for grp, part in per_time.groupby("grp", sort=True):
        km = kaplan_meier(part["duration"].to_numpy(), part["event"].to_numpy(), part["runs"].to_numpy())
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
    src, params = _cells(store, "by_j", flt, by)
    df = store.query(f"SELECT {_group_expr(by)} AS group, least(t.j, ?) AS j, CAST(sum(t.checks) AS BIGINT) AS checks, "
                     f"CAST(sum(t.failures) AS BIGINT) AS failures {src} GROUP BY ALL ORDER BY 1, 2",
                     [max_j, *params]).to_pandas()
    df = _with_ci(df)
    base = df[df["j"] == 0].set_index("group")["rate"]
    df["ratio_to_j0"] = [r / base.get(g) if base.get(g) else np.nan
                         for g, r in zip(df["group"], df["rate"], strict=True)]
    return df


def previous_step(store: CorpusStore, by: str | None = None, flt: TrajectoryFilter | None = None) -> pd.DataFrame:
    """P(fail | previous check failed) vs P(fail | previous check passed)."""
    src, params = _cells(store, "trajectories", flt, by)
    sums = store.query(f"SELECT {_group_expr(by)} AS group, "
                       f"CAST(sum(t.after_fail_checks) AS BIGINT) AS failed_checks, "
                       f"CAST(sum(t.after_fail_failures) AS BIGINT) AS failed_failures, "
                       f"CAST(sum(t.after_pass_checks) AS BIGINT) AS passed_checks, "
                       f"CAST(sum(t.after_pass_failures) AS BIGINT) AS passed_failures "
                       f"{src} GROUP BY 1 ORDER BY 1", params).to_pandas()
    rows = [(g, label, int(n), int(k)) for g, fc, ff, pc, pf in sums.itertuples(index=False, name=None)
            for label, n, k in (("previous failed", fc, ff), ("previous passed", pc, pf)) if n > 0]
    df = pd.DataFrame(rows, columns=["group", "previous", "checks", "failures"]).astype(
        {"checks": "int64", "failures": "int64"})
    return _with_ci(df)


def recovery(store: CorpusStore, by: str | None = None, flt: TrajectoryFilter | None = None) -> pd.DataFrame:
    """What follows a failed check: a passed next check, a retry, a recovery, a run that still succeeds.

    A retry is the same tool called again within two agent steps; a recovery is a retry that passes.
    """
    src, params = _cells(store, "trajectories", flt, by)
    df = store.query(f"SELECT {_group_expr(by)} AS group, CAST(sum(t.failed_agent_checks) AS BIGINT) AS failed_checks, "
                     f"CAST(sum(t.next_check_passed) AS BIGINT) AS next_check_passed, "
                     f"CAST(sum(t.retried) AS BIGINT) AS retried, CAST(sum(t.recovered) AS BIGINT) AS recovered, "
                     f"CAST(sum(t.with_failed_agent_checks) AS BIGINT) AS runs_with_failure, "
                     f"CAST(coalesce(sum(t.with_failed_agent_checks) FILTER (WHERE t.outcome = 'success'), 0) "
                     f"AS BIGINT) AS runs_with_failure_succeeded "
                     f"{src} GROUP BY 1 HAVING sum(t.with_failed_agent_checks) > 0 ORDER BY 1", params).to_pandas()
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

    Runs of one group with the same step count and outcome are one cell with a count: the fit weighs each
    cell by its count (the same maximum-likelihood fit as one row per run), and a bootstrap resample draws
    the cell counts from a multinomial (the same distribution as resampling runs with replacement).

    Returns {"fits": DataFrame per group (intercept, slope, n, steps_at_50, its CI, ...),
             "points": DataFrame of (group, n_steps, success, runs) cells for plotting}.
    """
    src, params = _cells(store, "trajectories", flt, by)
    pts = store.query(f"SELECT {_group_expr(by)} AS group, t.n_steps, "
                      f"CAST(t.outcome = 'success' AS INTEGER) AS success, CAST(sum(t.trajectories) AS BIGINT) AS runs "
                      f"{src} AND t.outcome IN ('success', 'failure') AND t.n_steps > 0 "
                      f"GROUP BY ALL ORDER BY ALL", params).to_pandas()
    rng = np.random.default_rng(seed)
    rows = []
    for grp, part in pts.groupby("group", sort=True):
        x = np.log2(part["n_steps"].to_numpy(dtype=float))
        y = part["success"].to_numpy(dtype=float)
        w = part["runs"].to_numpy(dtype=float)
        n = int(w.sum())
        fit = fit_logistic(x, y, w)
        row: dict[str, Any] = {"group": grp, "n": n, "success_rate": float((y * w).sum() / n),
                               "intercept": fit.intercept, "slope": fit.slope, "fitted": fit.converged}
        boots: dict[float, list[float]] = {q: [] for q in quantiles}  # quantile -> bootstrap step counts
        if fit.converged and n_boot:
            for b in fit_logistic_many(x, y, rng.multinomial(n, w / n, size=n_boot).astype(float)):
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
    """pass^k over the trials of each task (unbiased estimator), k = 1..max trials.

    Tasks with the same (trials, successes) contribute alike, so DuckDB counts them and Python sees a few rows.
    """
    clauses, params = store.filter_clauses(flt)
    extra = where_sql(clauses, "AND")
    per_task = store.query(
        f"SELECT \"group\", n, c, count(*) AS tasks FROM (SELECT {_group_expr(by)} AS group, t.task_id, count(*) AS n, "
        f"CAST(sum(CAST(t.outcome = 'success' AS INTEGER)) AS BIGINT) AS c FROM trajectories t "
        f"WHERE t.task_id IS NOT NULL AND t.outcome IN ('success', 'failure'){extra} GROUP BY ALL) "
        f"GROUP BY ALL ORDER BY ALL", params).to_pandas()
    frames = []
    for grp, part in per_task.groupby("group", sort=True):
        df = pass_hat_k(part)
        df.insert(0, "group", grp)
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["group", "k", "pass_hat_k", "tasks"])
    return pd.concat(frames, ignore_index=True)
