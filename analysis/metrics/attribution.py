"""Decisive-step attribution (Who&When, AgentRx): how often a predictor names the labelled failure step.

The *truth* is a set of steps per trajectory: the decisive step an importer marked (`steps.is_decisive_error`,
the default) or the steps of the current labels of one category (optionally from one source), e.g. the
Who&When `decisive` labels or AgentRx `root_cause` / `failure` labels. A *predictor* names one step per
trajectory: a built-in rule (first or last failed check, the highest-surprisal step of a replay) or the
labels of another category or source, e.g. a judge's predicted steps imported as labels (its earliest
labelled step counts).

A prediction is exact when it equals a truth step and within ±k when its distance to the nearest truth
step is at most k (AgentRx's `step_distance_to_nearest_gt`; with one truth step per run this is Who&When's
step-level accuracy). A trajectory without a prediction counts as wrong. Where the truth names agents
(Who&When's mistake_agent, AgentRx's failed_agent), agent-level ("who") accuracy is the share of those
trajectories whose predicted agent is one of them (case-insensitive).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from horizonlens.corpus.filters import TrajectoryFilter, where_sql
from horizonlens.corpus.store import CorpusStore

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
    """CTE `truth`: trajectory_id, truth_steps (sorted list), truth_agents (list)."""
    if truth is None:
        # the Who&When importer keeps mistake_agent in the trajectory's metadata
        agent = ("CASE WHEN json_valid(any_value(tr.metadata)) "
                 "THEN json_extract_string(any_value(tr.metadata), '$.mistake_agent') END")
        return ("truth AS (SELECT s.trajectory_id, list(DISTINCT s.step ORDER BY s.step) AS truth_steps, "
                f"CASE WHEN {agent} IS NULL THEN []::VARCHAR[] ELSE [{agent}] END AS truth_agents "
                "FROM steps s JOIN trajectories tr ON tr.trajectory_id = s.trajectory_id "
                "WHERE s.is_decisive_error GROUP BY s.trajectory_id)", [])
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
    ctes = [truth_sql,
            "c AS (SELECT s.trajectory_id, min(s.step) FILTER (WHERE s.check_passed = false) AS first_failed_check, "
            "max(s.step) FILTER (WHERE s.check_passed = false) AS last_failed_check FROM steps s "
            "WHERE s.trajectory_id IN (SELECT trajectory_id FROM truth) GROUP BY s.trajectory_id)"]
    cols = ["c.first_failed_check", "c.last_failed_check"]
    joins = ["LEFT JOIN c ON c.trajectory_id = truth.trajectory_id"]
    if checkpoint_id and checkpoint_id in store.replay_checkpoints:
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


def _distance(pred: Any, truth: Any) -> float:
    """|pred − nearest truth step|; inf without a prediction or a truth step."""
    if pred is None or (isinstance(pred, float) and np.isnan(pred)) or pred is pd.NA:
        return np.inf
    steps = [int(s) for s in (truth if truth is not None else []) if s is not None]
    return float(min(abs(int(pred) - s) for s in steps)) if steps else np.inf


def _agents(values: Any) -> set[str]:
    return {str(v).strip().lower() for v in (values if values is not None else []) if v is not None}


def accuracy(preds: pd.DataFrame, tolerances: tuple[int, ...] = TOLERANCES) -> pd.DataFrame:
    """Exact and ±k step accuracy of each predictor, and agent-level accuracy where the truth names agents."""
    rows: list[dict[str, Any]] = []
    n = len(preds)
    truth = preds["truth_steps"] if "truth_steps" in preds else preds["decisive"].map(lambda d: [d])
    named = preds["truth_agents"].map(_agents) if "truth_agents" in preds else pd.Series([set()] * n, dtype=object)
    n_named = int(named.map(bool).sum()) if n else 0
    for name in predictor_columns(preds):
        if preds[name].isna().all() and not name.startswith("label:"):
            continue  # a built-in with nothing to say here (no replays for the surprisal rule)
        dist = np.array([_distance(p, tr) for p, tr in zip(preds[name], truth, strict=True)], dtype=float)
        row: dict[str, Any] = {"predictor": name, "trajectories": n, "predicted": int(preds[name].notna().sum())}
        for k in tolerances:
            row["exact" if k == 0 else f"within_{k}"] = float((dist <= k).sum() / n) if n else None
        agent_col = f"{name}:agent"
        if agent_col in preds and n_named:
            hits = [bool(agents) and str(a).strip().lower() in agents
                    for a, agents in zip(preds[agent_col], named, strict=True) if a is not None and a is not pd.NA]
            row["agent_accuracy"] = sum(hits) / n_named
            row["agent_trajectories"] = n_named
        rows.append(row)
    return pd.DataFrame(rows)


def label_sets(store: CorpusStore) -> list[LabelSet]:
    """Every (category, source) of the current labels that puts labels on steps: the truths and predictors on offer."""
    rows = store.query("SELECT DISTINCT category, source FROM annotations WHERE step IS NOT NULL "
                       "ORDER BY category, source").to_pylist()
    return [LabelSet(r["category"], r["source"]) for r in rows if r["category"]]
