"""Two run sets compared on their common tasks: paired rates, McNemar, pass^k, survival, the tasks that flipped.

A task is common when both run sets hold at least one run of it with a known outcome (same `task_id`). Every
statistic is paired over those tasks, so a model is never credited for having run easier tasks:

- **pass rate**: the mean over tasks of each side's share of successful trials (every trial counts, each task
  weighs the same); `diff` = B − A with a paired bootstrap interval over tasks;
- **McNemar**: the first trial of each side per task; `a_only` = tasks where A's first trial succeeded and
  B's failed, `b_only` the reverse; the exact two-sided binomial p-value on those discordant tasks;
- **pass^k**: per k, the unbiased τ-bench estimator C(c,k)/C(n,k) per task and side, over tasks where both
  sides have at least k trials, with the same paired bootstrap;
- **log-rank**: survival to the first failed check, in steps (a run that never fails a check is censored at
  its last step), of all runs of A and of B on the common tasks;
- **flipped tasks**: one side succeeds in more than half of its trials and the other in fewer than half; for
  each, the best pair (a success of the winner and a failure of the loser that share the longest prefix of
  actions) and the step where their actions first part.

Facets (`by`) repeat the statistics per value (a task's value is the most common one among its runs), with
Holm-adjusted p-values; a value with fewer than `MIN_TASKS` common tasks gets a note instead of a p-value.
All run-level work is aggregated in DuckDB: Python sees one row per common task at most.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from horizonlens.errors import StoreError
from horizonlens.metrics.compare import action_text, align
from horizonlens.metrics.stats import binomial_two_sided, holm, kaplan_meier, logrank, paired_bootstrap
from horizonlens.query.runsets import RunSet, runs_relation, runset_clauses, timed_query
from horizonlens.query.store import CorpusStore
from horizonlens.storage.quoting import quote_ident

FACETS = ("domain", "teacher", "agent", "source", "horizon")
MIN_TASKS = 10  # fewer common tasks than this: no test is reported, only the counts
MAX_K = 8  # pass^k is reported up to this many trials by default
HORIZON_BINS = 5  # the horizon axis: at most this many bins of tasks, by their median step count
_INT_MAX = 2_147_483_647


@dataclass
class Comparison:
    """The comparison of two run sets: per-task rows, survival rows and the statistics (`summary`, JSON-ready)."""

    a: RunSet
    b: RunSet
    tasks: pd.DataFrame  # one row per common task (see `task_table`)
    survival: pd.DataFrame  # side, t, event, runs (+ facet): the runs of both sides on the common tasks
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def flipped(self) -> list[dict[str, Any]]:
        """The flipped tasks, with their best pair and first divergence step."""
        return list(self.summary.get("flipped", []))

    def km(self) -> pd.DataFrame:
        """Kaplan–Meier survival of A and of B on the common tasks (column `side`)."""
        frames = []
        for side, part in self.survival.groupby("side", sort=True):
            km = kaplan_meier(part["t"].to_numpy(), part["event"].to_numpy(), part["runs"].to_numpy())
            km.insert(0, "side", side)
            frames.append(km)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["side", "t", "survival"])


def _sides_sql(store: CorpusStore, a: RunSet, b: RunSet, facet: str | None) -> tuple[str, list[Any]]:
    """CTE `sides`: every run of A (side 'a') and of B (side 'b') with a task and a known outcome."""
    a_clauses, a_params = runset_clauses(store, a)
    b_clauses, b_params = runset_clauses(store, b)
    relation = runs_relation(a, b)
    facet_sql = f"CAST(t.{quote_ident(facet)} AS VARCHAR)" if facet and facet != "horizon" else "NULL"
    a_where = " AND ".join(a_clauses) or "true"
    b_where = " AND ".join(b_clauses) or "true"
    sql = f"""sel AS (
      SELECT * FROM (
        SELECT t.task_id, t.trajectory_id, t.trial, t.n_steps, t.first_failed_step,
               CAST(t.outcome = 'success' AS INTEGER) AS success, {facet_sql} AS facet,
               coalesce(({a_where}), false) AS in_a, coalesce(({b_where}), false) AS in_b
        FROM {relation} t WHERE t.task_id IS NOT NULL AND t.outcome IN ('success', 'failure'))
      WHERE in_a OR in_b
    ), sides AS (
      SELECT 'a' AS side, * FROM sel WHERE in_a UNION ALL SELECT 'b' AS side, * FROM sel WHERE in_b
    ), common AS (
      SELECT task_id, mode(facet) AS task_facet FROM sides GROUP BY task_id
      HAVING bool_or(side = 'a') AND bool_or(side = 'b')
    )"""
    return sql, [*a_params, *b_params]


def task_table(store: CorpusStore, a: RunSet, b: RunSet, facet: str | None = None) -> pd.DataFrame:
    """One row per common task: each side's trials, successes and first-trial outcome, and the task's horizon.

    `horizon` is the median step count of the task's runs on both sides; `facet` its most common facet value.
    """
    sides, params = _sides_sql(store, a, b, facet)
    table = timed_query(store, f"""WITH {sides}
        SELECT s.task_id,
               CAST(count(*) FILTER (WHERE s.side = 'a') AS BIGINT) AS a_trials,
               CAST(coalesce(sum(s.success) FILTER (WHERE s.side = 'a'), 0) AS BIGINT) AS a_successes,
               CAST(count(*) FILTER (WHERE s.side = 'b') AS BIGINT) AS b_trials,
               CAST(coalesce(sum(s.success) FILTER (WHERE s.side = 'b'), 0) AS BIGINT) AS b_successes,
               arg_min(s.success, (coalesce(s.trial, {_INT_MAX}), s.trajectory_id)) FILTER (WHERE s.side = 'a')
                 AS a_first,
               arg_min(s.success, (coalesce(s.trial, {_INT_MAX}), s.trajectory_id)) FILTER (WHERE s.side = 'b')
                 AS b_first,
               CAST(median(s.n_steps) AS DOUBLE) AS horizon, any_value(c.task_facet) AS facet
        FROM sides s JOIN common c ON c.task_id = s.task_id
        GROUP BY s.task_id ORDER BY s.task_id""", params)
    df = table.to_pandas()
    a_rate = df["a_successes"] / df["a_trials"]
    b_rate = df["b_successes"] / df["b_trials"]
    df["flipped"] = ((a_rate > 0.5) & (b_rate < 0.5)) | ((a_rate < 0.5) & (b_rate > 0.5))
    df["winner"] = pd.Series(np.where(b_rate > a_rate, "b", "a"), index=df.index).where(df["flipped"], None)
    return df


def survival_table(store: CorpusStore, a: RunSet, b: RunSet, facet: str | None = None,
                   per_task: bool = False) -> pd.DataFrame:
    """Runs of each side on the common tasks as (side, facet, t, event, runs) cells (also per task: `per_task`).

    t is the number of steps up to the first failed check (event 1), or the run's step count (event 0).
    """
    sides, params = _sides_sql(store, a, b, facet)
    table = timed_query(store, f"""WITH {sides}
        SELECT s.side, c.task_facet AS facet, {"s.task_id," if per_task else ""}
               CAST(CASE WHEN s.first_failed_step IS NULL THEN s.n_steps ELSE s.first_failed_step + 1 END AS BIGINT)
                 AS t,
               CAST(s.first_failed_step IS NOT NULL AS INTEGER) AS event, count(*) AS runs
        FROM sides s JOIN common c ON c.task_id = s.task_id
        WHERE s.n_steps IS NOT NULL GROUP BY ALL ORDER BY ALL""", params)
    return table.to_pandas()


def side_totals(store: CorpusStore, a: RunSet, b: RunSet) -> dict[str, dict[str, int]]:
    """Runs and distinct tasks of each run set, whatever their outcome, in one scan."""
    (a_clauses, a_params), (b_clauses, b_params) = runset_clauses(store, a), runset_clauses(store, b)
    a_where, b_where = " AND ".join(a_clauses) or "true", " AND ".join(b_clauses) or "true"
    row = timed_query(store, f"""SELECT count(*) FILTER (WHERE in_a) AS a_runs,
               count(DISTINCT task_id) FILTER (WHERE in_a) AS a_tasks,
               count(*) FILTER (WHERE in_b) AS b_runs, count(DISTINCT task_id) FILTER (WHERE in_b) AS b_tasks
        FROM (SELECT t.task_id, coalesce(({a_where}), false) AS in_a, coalesce(({b_where}), false) AS in_b
              FROM {runs_relation(a, b)} t)""", [*a_params, *b_params]).to_pylist()[0]
    return {side: {"n_runs": int(row[f"{side}_runs"]), "n_tasks": int(row[f"{side}_tasks"])} for side in ("a", "b")}


# --- statistics over the per-task rows ---------------------------------------------------------------------------
def _cells(tasks: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Tasks with the same values in `columns` are interchangeable: one row per combination, `tasks` counted."""
    return tasks.groupby(columns, sort=True, dropna=False).size().rename("tasks").reset_index()


def pass_rate(tasks: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
    """Mean per-task success share of A and B, B − A, and its paired bootstrap 95% interval over tasks."""
    if tasks.empty:
        return {"a": None, "b": None, "diff": None, "ci": None}
    cells = _cells(tasks, ["a_trials", "a_successes", "b_trials", "b_successes"])
    va = (cells["a_successes"] / cells["a_trials"]).to_numpy()
    vb = (cells["b_successes"] / cells["b_trials"]).to_numpy()
    w = cells["tasks"].to_numpy()
    a, b = float((va * w).sum() / w.sum()), float((vb * w).sum() / w.sum())
    lo, hi = paired_bootstrap(va, vb, w, n_boot=n_boot, seed=seed)
    return {"a": a, "b": b, "diff": b - a, "ci": None if lo is None else [lo, hi]}


def pass_k(tasks: pd.DataFrame, k_max: int, n_boot: int, seed: int) -> list[dict[str, Any]]:
    """pass^k of A and B for k = 1..k_max over tasks where both have k trials, B − A and its paired interval."""
    out = []
    cells = _cells(tasks, ["a_trials", "a_successes", "b_trials", "b_successes"]) if not tasks.empty else tasks
    for k in range(1, k_max + 1):
        part = cells[(cells["a_trials"] >= k) & (cells["b_trials"] >= k)] if not cells.empty else cells
        if part.empty:
            break
        va = np.array([math.comb(int(c), k) / math.comb(int(n), k)
                       for n, c in zip(part["a_trials"], part["a_successes"], strict=True)])
        vb = np.array([math.comb(int(c), k) / math.comb(int(n), k)
                       for n, c in zip(part["b_trials"], part["b_successes"], strict=True)])
        w = part["tasks"].to_numpy()
        a, b = float((va * w).sum() / w.sum()), float((vb * w).sum() / w.sum())
        lo, hi = paired_bootstrap(va, vb, w, n_boot=n_boot, seed=seed + k)
        out.append({"k": k, "tasks": int(w.sum()), "a": a, "b": b, "diff": b - a,
                    "ci": None if lo is None else [lo, hi]})
    return out


def mcnemar(tasks: pd.DataFrame) -> dict[str, Any]:
    """First trials paired by task: A-only and B-only successes and the exact two-sided p-value on them."""
    a_only = int(((tasks["a_first"] == 1) & (tasks["b_first"] == 0)).sum()) if not tasks.empty else 0
    b_only = int(((tasks["a_first"] == 0) & (tasks["b_first"] == 1)).sum()) if not tasks.empty else 0
    both = int(((tasks["a_first"] == 1) & (tasks["b_first"] == 1)).sum()) if not tasks.empty else 0
    n = a_only + b_only
    return {"a_only": a_only, "b_only": b_only, "both": both, "neither": len(tasks) - n - both,
            "p_value": binomial_two_sided(b_only, n) if n else None,
            "note": None if n else "no task where the first trials disagree: nothing to test"}


def logrank_of(survival: pd.DataFrame) -> dict[str, Any]:
    """Log-rank test of A's and B's survival to the first failed check, with the runs and events behind it."""
    runs = {s: int(survival.loc[survival["side"] == s, "runs"].sum()) for s in ("a", "b")}
    events = {s: int(survival.loc[(survival["side"] == s) & (survival["event"] == 1), "runs"].sum()) for s in "ab"}
    stat, p = logrank(survival["t"].to_numpy(), survival["event"].to_numpy(),
                      (survival["side"] == "b").to_numpy().astype(int), survival["runs"].to_numpy())
    tested = np.isfinite(stat)
    return {"statistic": float(stat) if tested else None, "p_value": float(p) if tested else None,
            "a_runs": runs["a"], "b_runs": runs["b"], "a_events": events["a"], "b_events": events["b"],
            "note": None if tested else "no failed check on the common tasks: nothing to test"}


def too_few(n_tasks: int) -> str | None:
    """Why no test is reported for this many common tasks (None when there are enough)."""
    if n_tasks >= MIN_TASKS:
        return None
    return f"{n_tasks} common task{'s' if n_tasks != 1 else ''}: too few for a test (at least {MIN_TASKS})"


def statistics(tasks: pd.DataFrame, survival: pd.DataFrame, k_max: int, n_boot: int, seed: int) -> dict[str, Any]:
    """Every paired statistic of one group of common tasks (the whole comparison, or one facet value)."""
    note = too_few(len(tasks))
    out: dict[str, Any] = {"common_tasks": len(tasks), "pass_rate": pass_rate(tasks, n_boot, seed),
                           "mcnemar": mcnemar(tasks), "pass_k": pass_k(tasks, k_max, n_boot, seed),
                           "logrank": logrank_of(survival), "note": note}
    if note:  # counts and rates stay; tests and intervals on a handful of tasks would mislead
        out["pass_rate"]["ci"] = None
        for row in out["pass_k"]:
            row["ci"] = None
        out["mcnemar"].update(p_value=None, note=note)
        out["logrank"].update(statistic=None, p_value=None, note=note)
    return out


def horizon_bins(tasks: pd.DataFrame, bins: int = HORIZON_BINS) -> pd.Series:
    """Each task's horizon bin ("12–25 steps"): quantile bins of the median step count, at least MIN_TASKS each."""
    if tasks.empty:
        return pd.Series([], dtype=object)
    n = max(1, min(bins, len(tasks) // MIN_TASKS))
    steps = tasks["horizon"].fillna(0)
    edges = np.unique(np.quantile(steps, np.linspace(0, 1, n + 1)))
    if len(edges) < 2:
        edges = np.array([steps.min(), steps.max() + 1])
    index = pd.Series(np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, len(edges) - 2), index=tasks.index)
    spans = steps.groupby(index).agg(["min", "max"])
    # the label says the step counts its tasks have; a rank leads so that labels sort by bin, not as text
    labels = {i: f"{rank + 1}. {lo:.0f}–{hi:.0f} steps" for rank, (i, lo, hi) in
              enumerate(spans.itertuples(name=None))}
    return index.map(labels)


def by_horizon(tasks: pd.DataFrame, n_boot: int, seed: int) -> list[dict[str, Any]]:
    """B − A by horizon bin: does one side's advantage grow with the horizon?"""
    if tasks.empty:
        return []
    bins = horizon_bins(tasks)
    out = []
    for label, part in tasks.groupby(bins, sort=True):
        rate = pass_rate(part, n_boot, seed)
        out.append({"bin": str(label), "steps_from": float(part["horizon"].min()),
                    "steps_to": float(part["horizon"].max()), "tasks": len(part), **rate,
                    "b_wins": int((part["winner"] == "b").sum()), "a_wins": int((part["winner"] == "a").sum())})
    return out


def by_facet(tasks: pd.DataFrame, survival: pd.DataFrame, facet: str, k_max: int, n_boot: int,
             seed: int) -> list[dict[str, Any]]:
    """The statistics per facet value, with Holm-adjusted McNemar and log-rank p-values across the values."""
    if facet == "horizon":  # bins are made from the task rows, then given to each task's survival cells
        keys = horizon_bins(tasks)
        tasks = tasks.assign(facet=keys)
        survival = survival.assign(facet=survival["task_id"].map(dict(zip(tasks["task_id"], keys, strict=True))))
    groups = []
    for value, part in tasks.groupby(tasks["facet"].fillna("(none)"), sort=True):
        surv = survival[survival["facet"].fillna("(none)") == value]
        groups.append({"facet": facet, "value": value, **statistics(part, surv, k_max, n_boot, seed)})
    for test in ("mcnemar", "logrank"):
        adjusted = holm([g[test]["p_value"] for g in groups])
        for g, p in zip(groups, adjusted, strict=True):
            g[test]["p_holm"] = p
    return groups


def _k_max(tasks: pd.DataFrame, k: int | None) -> int:
    if k is not None:
        return max(1, int(k))
    if tasks.empty:
        return 1
    return int(max(1, min(MAX_K, tasks["a_trials"].max(), tasks["b_trials"].max())))


def compare(store: CorpusStore, a: RunSet, b: RunSet, by: str | None = None, k: int | None = None,
            n_boot: int = 2000, seed: int = 0, divergence: bool = True) -> Comparison:
    """Compare run sets A and B on their common tasks (see the module docstring for every statistic).

    `by` repeats the statistics per facet value (domain, teacher, agent, source, or horizon bins); `k` is the
    largest k of pass^k (default: the trials both sides have, at most 8). StoreError for an unknown facet;
    SqlError for a predicate the SQL gate refuses.
    """
    if by is not None and by not in FACETS:
        raise StoreError(f"cannot compare by {by!r}; choose one of {', '.join(FACETS)}")
    column = by if by != "horizon" else None
    tasks = task_table(store, a, b, column)
    cells = survival_table(store, a, b, column, per_task=by == "horizon")
    survival = pd.DataFrame(cells.groupby(["side", "t", "event"], as_index=False)["runs"].sum())
    k_max = _k_max(tasks, k)
    totals = side_totals(store, a, b)
    summary: dict[str, Any] = {
        "a": {"name": a.name, "predicate": a.predicate, **totals["a"]},
        "b": {"name": b.name, "predicate": b.predicate, **totals["b"]},
        # pairs: whether each flipped task's pair is the best one and has its parting step (else: lowest trials)
        "settings": {"k": k_max, "n_boot": n_boot, "seed": seed, "min_tasks": MIN_TASKS, "pairs": divergence},
        **statistics(tasks, survival, k_max, n_boot, seed),
    }
    for side in ("a", "b"):
        summary[side]["compared_runs"] = int(tasks[f"{side}_trials"].sum()) if not tasks.empty else 0
    summary["flipped"] = flipped(store, a, b, tasks, divergence)
    summary["by_horizon"] = by_horizon(tasks, n_boot, seed)
    summary["by"] = by_facet(tasks, cells, by, k_max, n_boot, seed) if by else []
    if tasks.empty:
        summary["note"] = ("the two run sets share no task (no task_id with a known outcome in both); "
                           "pick run sets that ran the same tasks")
    return Comparison(a, b, tasks, survival, summary)


# --- flipped tasks: the best pair and where its runs part ------------------------------------------------------
# A step's action as the source wrote it: tool calls as name(arguments), else the message. Equal raw actions are
# equal actions; the first step where they differ is then checked with `compare.action_text` (JSON arguments
# compared by content), so the step found is the one the two-trajectory view finds.
RAW_ACTION_SQL = ("CASE WHEN len(s.tool_calls) > 0 THEN array_to_string(list_transform(s.tool_calls, "
                  "lambda c: coalesce(c.name, '') || '(' || coalesce(c.arguments, '') || ')'), '; ') "
                  "ELSE coalesce(s.message, '') END")


def flipped(store: CorpusStore, a: RunSet, b: RunSet, tasks: pd.DataFrame, divergence: bool = True
            ) -> list[dict[str, Any]]:
    """The flipped tasks, each with its best pair (`a_trajectory`, `b_trajectory`) and `first_divergence_step`.

    The best pair is a successful run of the winning side and a failed run of the other whose actions agree
    for the most steps (a pair that never parts counts as agreeing longest); ties go to the lowest trials.
    Without `divergence` the steps are not read: the pair is the lowest trials' and the step is left None.
    """
    flips = tasks[tasks["flipped"]]
    if flips.empty:
        return []
    rows = {r["task_id"]: {"task_id": r["task_id"], "winner": r["winner"],
                           "a_successes": int(r["a_successes"]), "a_trials": int(r["a_trials"]),
                           "b_successes": int(r["b_successes"]), "b_trials": int(r["b_trials"]),
                           "horizon": float(r["horizon"]) if pd.notna(r["horizon"]) else None,
                           "a_trajectory": None, "b_trajectory": None, "first_divergence_step": None}
            for r in flips.to_dict(orient="records")}
    for pair in best_pairs(store, a, b, flips[["task_id", "winner"]], divergence):
        rows[pair["task_id"]].update(pair)
    return list(rows.values())


def best_pairs(store: CorpusStore, a: RunSet, b: RunSet, flips: pd.DataFrame, divergence: bool = True
               ) -> list[dict[str, Any]]:
    """Per flipped task (`flips`: task_id, winner), its best pair and the step where the pair's actions part."""
    pairs = candidate_pairs(store, a, b, flips)
    if not divergence:
        first = pairs.sort_values(["task_id", "w_trial", "l_trial", "a_trajectory", "b_trajectory"]).groupby(
            "task_id", sort=False).head(1)
        return [{"task_id": r["task_id"], "a_trajectory": r["a_trajectory"], "b_trajectory": r["b_trajectory"],
                 "first_divergence_step": None} for r in first.to_dict(orient="records")]
    parted = _parting_steps(store, pairs)
    pairs["first_divergence_step"] = [parted.get((x, y)) for x, y in zip(pairs["a_trajectory"],
                                                                         pairs["b_trajectory"], strict=True)]
    # the pair that agrees longest: a pair that never parts first, then the latest parting, then the lowest trials
    # (the column is float once it holds a None: a pair that never parts is NaN there)
    pairs["rank"] = pairs["first_divergence_step"].map(lambda v: -math.inf if pd.isna(v) else -v)
    best = pairs.sort_values(["task_id", "rank", "w_trial", "l_trial", "a_trajectory", "b_trajectory"]).groupby(
        "task_id", sort=False).head(1)
    return [{"task_id": r["task_id"], "a_trajectory": r["a_trajectory"], "b_trajectory": r["b_trajectory"],
             "first_divergence_step": None if pd.isna(r["first_divergence_step"]) else int(r["first_divergence_step"])}
            for r in best.to_dict(orient="records")]


def best_pair(store: CorpusStore, a: RunSet, b: RunSet, task_id: str, winner: str) -> dict[str, Any]:
    """One flipped task's best pair and where it parts: what the Run sets tab reads when the task is opened.

    The tab compares without `divergence` (at 10^6 runs finding where every flipped pair parts is most of a
    comparison's time) and asks for the one pair the user opens.
    """
    pairs = best_pairs(store, a, b, pd.DataFrame({"task_id": [task_id], "winner": [winner]}))
    return pairs[0] if pairs else {"task_id": task_id, "a_trajectory": None, "b_trajectory": None,
                                   "first_divergence_step": None}


def candidate_pairs(store: CorpusStore, a: RunSet, b: RunSet, flips: pd.DataFrame) -> pd.DataFrame:
    """Every (success of the winner, failure of the other side) pair of each flipped task, with their trials."""
    sides, params = _sides_sql(store, a, b, None)
    table = timed_query(store, f"""WITH {sides}, runs AS (
          SELECT s.side, s.task_id, s.trajectory_id, s.success, coalesce(s.trial, {_INT_MAX}) AS trial
          FROM sides s JOIN flips f ON f.task_id = s.task_id
        )
        SELECT w.task_id, CASE WHEN f.winner = 'a' THEN w.trajectory_id ELSE l.trajectory_id END AS a_trajectory,
               CASE WHEN f.winner = 'a' THEN l.trajectory_id ELSE w.trajectory_id END AS b_trajectory,
               w.trial AS w_trial, l.trial AS l_trial
        FROM flips f JOIN runs w ON w.task_id = f.task_id AND w.side = f.winner AND w.success = 1
                     JOIN runs l ON l.task_id = f.task_id AND l.side <> f.winner AND l.success = 0""", params,
                        tables={"flips": pa.Table.from_pandas(flips.reset_index(drop=True), preserve_index=False)})
    return table.to_pandas()


def _parting_steps(store: CorpusStore, pairs: pd.DataFrame) -> dict[tuple[str, str], int | None]:
    """(a_trajectory, b_trajectory) -> the first step where an agent step's actions differ (absent: never).

    A pass over the steps of the pairs' runs finds each pair's first step whose raw actions differ; a second
    reads those two steps, whose action texts decide. Where they agree (the same JSON written another way)
    the pair is aligned whole by `compare.align`, which is rare.
    """
    # The first pass compares 64-bit hashes of the raw actions: a few bytes per step go through the joins, not
    # the messages and calls (at 10^6 runs that halved the peak memory). A collision, ~2^-64 per step pair,
    # could only hide a difference.
    pairs_table = pa.Table.from_pandas(pairs[["a_trajectory", "b_trajectory"]], preserve_index=False)
    parted = timed_query(store, f"""WITH acts AS (
            SELECT s.trajectory_id, s.step, s.source = 'agent' AS agent, hash({RAW_ACTION_SQL}) AS h
            FROM steps s WHERE s.trajectory_id IN (SELECT a_trajectory FROM pairs UNION SELECT b_trajectory FROM pairs)
          ),
          x AS (SELECT p.a_trajectory, p.b_trajectory, s.step, s.agent, s.h FROM pairs p JOIN acts s
                ON s.trajectory_id = p.a_trajectory),
          y AS (SELECT p.a_trajectory, p.b_trajectory, s.step, s.agent, s.h FROM pairs p JOIN acts s
                ON s.trajectory_id = p.b_trajectory)
        SELECT coalesce(x.a_trajectory, y.a_trajectory) AS a_trajectory,
               coalesce(x.b_trajectory, y.b_trajectory) AS b_trajectory, min(coalesce(x.step, y.step)) AS step
        FROM x FULL JOIN y ON x.a_trajectory = y.a_trajectory AND x.b_trajectory = y.b_trajectory AND x.step = y.step
        WHERE (x.agent OR y.agent) AND x.h IS DISTINCT FROM y.h
        GROUP BY ALL""", [], tables={"pairs": pairs_table})
    # one scan for both steps of every pair (a semi-join on (run, step)); joining steps twice read them twice
    found = timed_query(store, """WITH keys AS (SELECT a_trajectory AS t, step FROM parted
                                             UNION SELECT b_trajectory, step FROM parted)
        SELECT s.trajectory_id, s.step, s.tool_calls, s.message FROM steps s
        SEMI JOIN keys k ON s.trajectory_id = k.t AND s.step = k.step""", [], tables={"parted": parted})
    steps = {(r["trajectory_id"], r["step"]): r for r in found.to_pylist()}
    out: dict[tuple[str, str], int | None] = {}
    for row in parted.to_pylist():
        key, step = (row["a_trajectory"], row["b_trajectory"]), int(row["step"])
        x, y = steps.get((key[0], step)), steps.get((key[1], step))
        same = x is not None and y is not None and action_text(x) == action_text(y)
        out[key] = align(store, *key)[1] if same else step
    return out
