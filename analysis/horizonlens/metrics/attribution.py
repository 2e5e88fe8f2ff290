"""Decisive-step attribution (Who&When, AgentRx): how often a predictor names the labelled failure step.

The *truth* is a set of steps per trajectory (the importer's decisive step, or the current labels of one
category); a *predictor* names one step per trajectory (a built-in rule, or another set of labels, e.g. a
judge's). Accuracy is exact and within ±k steps of the nearest truth step, plus agent-level ("who") accuracy
where the truth names agents; docs/metrics.md ("Decisive-step attribution") defines each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from horizonlens.query.filters import TrajectoryFilter, where_sql
from horizonlens.query.store import CorpusStore

PREDICTORS = ("first_failed_check", "last_failed_check", "highest_surprisal")
TOLERANCES = (0, 1, 2, 5)


@dataclass(frozen=True)
class LabelSet:
    """The current labels of one category, optionally only those from one source: a truth or a predictor."""

    category: str
    source: str | None = None

    @property
    def name(self) -> str:
        """How the label set is named in tables: `label:<category>` or `label:<category>@<source>`."""
        return f"label:{self.category}" + (f"@{self.source}" if self.source else "")

    @classmethod
    def parse(cls, text: str) -> LabelSet:
        """`category` or `category@source` (a leading `label:` is allowed)."""
        text = text.removeprefix("label:")
        category, _, source = text.partition("@")
        return cls(category.strip(), source.strip() or None)

    def where(self, alias: str = "a") -> tuple[str, list[Any]]:
        """The SQL condition selecting these labels and its parameters."""
        sql, params = f"{alias}.category = ?", [self.category]
        if self.source:
            sql += f" AND {alias}.source = ?"
            params.append(self.source)
        return sql, params


def _truth_cte(truth: LabelSet | None) -> tuple[str, list[Any]]:
    """CTE `truth`: trajectory_id, truth_steps (sorted list), truth_agents (list).

    The importer's truth comes from the corpus aggregates (`agg_trajectories.decisive_steps`), not from a pass
    over every step; the caller makes them queryable with `store.aggregates()`.
    """
    if truth is None:
        # the Who&When importer keeps mistake_agent in the trajectory's metadata
        agent = "CASE WHEN json_valid(tr.metadata) THEN json_extract_string(tr.metadata, '$.mistake_agent') END"
        return ("truth AS (SELECT a.trajectory_id, a.decisive_steps AS truth_steps, "
                f"CASE WHEN {agent} IS NULL THEN []::VARCHAR[] ELSE [{agent}] END AS truth_agents "
                "FROM agg_trajectories a JOIN trajectories tr ON tr.trajectory_id = a.trajectory_id "
                "WHERE a.has_decisive)", [])
    cond, params = truth.where("a")
    return ("truth AS (SELECT a.trajectory_id, list(DISTINCT a.step ORDER BY a.step) FILTER (WHERE a.step IS NOT NULL) "
            "AS truth_steps, coalesce(list(DISTINCT a.agent) FILTER (WHERE a.agent IS NOT NULL), []) AS truth_agents "
            f"FROM annotations a WHERE {cond} GROUP BY a.trajectory_id HAVING count(a.step) > 0)", params)


def predictions(store: CorpusStore, checkpoint_id: str | None = None, flt: TrajectoryFilter | None = None,
                truth: LabelSet | None = None, label_predictors: Sequence[LabelSet] = (),
                failed_only: bool | None = None) -> pd.DataFrame:
    """Per trajectory with a truth: its truth steps and agents, and the step (and agent) each predictor names.

    Columns: trajectory_id, domain, agent, decisive (the earliest truth step), truth_steps, truth_agents, one
    column per built-in predictor, and `label:…` plus `label:…:agent` per label predictor. `failed_only`
    (default: only with the importer's truth) keeps failed runs only.
    """
    failed_only = truth is None if failed_only is None else failed_only
    truth_sql, params = _truth_cte(truth)
    clauses, filter_params = store.filter_clauses(flt)
    if failed_only:
        clauses = [*clauses, "t.outcome = 'failure'"]
    store.aggregates()  # the first and last failed check of each run, and the importer's decisive steps
    ctes = [truth_sql]
    cols = ["c.first_failed_check", "c.last_failed_check"]
    joins = ["LEFT JOIN agg_trajectories c ON c.trajectory_id = truth.trajectory_id"]
    if checkpoint_id:
        ctes.append("r AS (SELECT trajectory_id, arg_max(step, surprisal) AS hs FROM replay_steps "
                    "WHERE checkpoint_id = ? AND surprisal IS NOT NULL GROUP BY trajectory_id)")
        params.append(checkpoint_id)
        cols.append("r.hs AS highest_surprisal")
        joins.append("LEFT JOIN r ON r.trajectory_id = truth.trajectory_id")
    else:
        cols.append("CAST(NULL AS INTEGER) AS highest_surprisal")
    for i, pred in enumerate(label_predictors):
        cond, cond_params = pred.where("a")
        ctes.append(f"p{i} AS (SELECT a.trajectory_id, min(a.step) AS step, "
                    f"arg_min(a.agent, coalesce(a.step, 2147483647)) FILTER (WHERE a.agent IS NOT NULL) AS agent "
                    f"FROM annotations a WHERE {cond} GROUP BY a.trajectory_id)")
        params += cond_params
        cols += [f'p{i}.step AS "{_ident(pred.name)}"', f'p{i}.agent AS "{_ident(pred.name)}:agent"']
        joins.append(f"LEFT JOIN p{i} ON p{i}.trajectory_id = truth.trajectory_id")
    sql = (f"WITH {', '.join(ctes)} SELECT truth.trajectory_id, t.domain, t.agent, list_min(truth.truth_steps) "
           f"AS decisive, truth.truth_steps, truth.truth_agents, {', '.join(cols)} FROM truth "
           f"JOIN trajectories t ON t.trajectory_id = truth.trajectory_id {' '.join(joins)}"
           f"{where_sql(clauses)} ORDER BY truth.trajectory_id")
    return store.query(sql, [*params, *filter_params]).to_pandas()


def _ident(name: str) -> str:
    """A label set's name as a quoted column alias (double quotes doubled)."""
    return name.replace('"', '""')


def predictor_columns(preds: pd.DataFrame) -> list[str]:
    """The predictor columns of a predictions table, built-ins first."""
    labels = [c for c in preds.columns if c.startswith("label:") and not c.endswith(":agent")]
    return [p for p in PREDICTORS if p in preds] + labels


def _distances(pred: pd.Series, pair_run: np.ndarray, pair_step: np.ndarray, n: int) -> np.ndarray:
    """Per run: |prediction − nearest truth step|, inf where either is missing (pairs: (run, truth step))."""
    predicted = pd.to_numeric(pred, errors="coerce").to_numpy(dtype=float)
    dist = np.full(n, np.inf)
    gaps = np.abs(predicted[pair_run] - pair_step)
    np.fmin.at(dist, pair_run, np.where(np.isnan(gaps), np.inf, gaps))
    return dist


def accuracy(preds: pd.DataFrame, tolerances: tuple[int, ...] = TOLERANCES) -> pd.DataFrame:
    """Exact and ±k step accuracy of each predictor, and agent-level accuracy where the truth names agents.

    Vectorised over (run, truth step) and (run, truth agent) pairs: a million runs take well under a second.
    """
    rows: list[dict[str, Any]] = []
    preds = preds.reset_index(drop=True)
    n = len(preds)
    truth = preds["truth_steps"] if "truth_steps" in preds else preds["decisive"]
    pairs = truth.explode().dropna()  # a list column explodes to one row per element; a scalar stays one row
    pair_run = pairs.index.to_numpy(dtype=np.int64)
    pair_step = pairs.to_numpy(dtype=float)
    agents = preds["truth_agents"].explode().dropna() if "truth_agents" in preds else pd.Series(dtype=object)
    agents = _norm(agents)
    agents = agents[agents != ""]
    agent_run = agents.index.to_numpy(dtype=np.int64)
    n_named = int(np.unique(agent_run).size)
    for name in predictor_columns(preds):
        if preds[name].isna().all() and not name.startswith("label:"):
            continue  # a built-in with nothing to say here (no replays for the surprisal rule)
        dist = _distances(preds[name], pair_run, pair_step, n)
        row: dict[str, Any] = {"predictor": name, "trajectories": n, "predicted": int(preds[name].notna().sum())}
        for k in tolerances:
            row["exact" if k == 0 else f"within_{k}"] = float((dist <= k).sum() / n) if n else None
        agent_col = f"{name}:agent"
        if agent_col in preds and n_named:
            named = _norm(preds[agent_col]).to_numpy(dtype=object)
            match = (named[agent_run] == agents.to_numpy(dtype=object)) & pd.notna(named[agent_run])
            row["agent_accuracy"] = int(np.unique(agent_run[match]).size) / n_named
            row["agent_trajectories"] = n_named
        rows.append(row)
    return pd.DataFrame(rows)


def _norm(values: pd.Series) -> pd.Series:
    """Agent names compared case- and space-insensitively (missing stays missing)."""
    return values.map(lambda v: v if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))
                      else str(v).strip().lower())


def scores(store: CorpusStore, checkpoint_id: str | None = None, flt: TrajectoryFilter | None = None,
           truth: LabelSet | None = None, label_predictors: Sequence[LabelSet] = (),
           failed_only: bool | None = None) -> pd.DataFrame:
    """`accuracy` of `predictions`: the small table the app caches (a million runs' predictions are not)."""
    return accuracy(predictions(store, checkpoint_id, flt, truth, label_predictors, failed_only))


def label_sets(store: CorpusStore) -> list[LabelSet]:
    """Every (category, source) of the current labels that puts labels on steps: the truths and predictors on offer."""
    rows = store.query("SELECT DISTINCT category, source FROM annotations WHERE step IS NOT NULL "
                       "ORDER BY category, source").to_pylist()
    return [LabelSet(r["category"], r["source"]) for r in rows if r["category"]]
