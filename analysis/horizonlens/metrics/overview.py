"""The Explore page's headline figures and charts for the trajectories a filter selects.

Each function takes the Explore filter (None: the whole corpus), so the page can show the selection beside the
corpus totals. Group rates read the aggregate cube when the filter is on its columns (facets, outcome, step
range) and one row per trajectory otherwise; the totals and the length histogram read the `trajectories` view.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from horizonlens.derived.aggregates import cells
from horizonlens.errors import StoreError
from horizonlens.query.filters import TrajectoryFilter, where_sql
from horizonlens.query.listing import CUBE_FIELDS
from horizonlens.query.store import CorpusStore
from horizonlens.storage.quoting import quote_ident

GROUPS = ("domain", "agent", "teacher", "source", "outcome")
LENGTHS = ("n_steps", "n_tokens")


def summary(store: CorpusStore, flt: TrajectoryFilter | None = None) -> dict[str, Any]:
    """Trajectories, tasks, steps, tokens, success rate and share of runs with a failed check, under a filter."""
    clauses, params = store.filter_clauses(flt)
    return store.query(
        "SELECT count(*) AS trajectories, count(DISTINCT t.task_id) AS tasks, sum(t.n_steps)::BIGINT AS steps, "
        "sum(t.n_tokens)::BIGINT AS tokens, max(t.n_steps) AS max_steps, max(t.n_tokens) AS max_tokens, "
        "avg(CASE WHEN t.outcome = 'success' THEN 1.0 WHEN t.outcome = 'failure' THEN 0.0 END) AS success_rate, "
        "avg(CASE WHEN t.n_failed_checks > 0 THEN 1.0 ELSE 0.0 END) AS share_with_failed_checks "
        f"FROM trajectories t{where_sql(clauses)}", params).to_pylist()[0]


def group_rates(store: CorpusStore, column: str, flt: TrajectoryFilter | None = None) -> pd.DataFrame:
    """Per group: trajectories, success rate (of runs with a known outcome) and failed-check rate (of checks)."""
    if column not in GROUPS:
        raise StoreError(f"cannot group by {column!r}; choose one of {', '.join(GROUPS)}")
    store.aggregates()
    clauses, params = store.filter_clauses(flt)
    relation = cells("trajectories", cube=flt is None or flt.uses_only(CUBE_FIELDS))
    col = quote_ident(column)
    return store.query(
        f"SELECT t.{col} AS {col}, CAST(sum(t.trajectories) AS BIGINT) AS trajectories, "
        f"CAST(coalesce(sum(t.trajectories) FILTER (WHERE t.outcome = 'success'), 0) AS DOUBLE) "
        f"  / sum(t.trajectories) FILTER (WHERE t.outcome IN ('success', 'failure')) AS success_rate, "
        f"sum(t.failures) / nullif(sum(t.checks), 0) AS failed_check_rate, CAST(sum(t.tokens) AS BIGINT) AS tokens "
        f"FROM {relation} t{where_sql(clauses)} GROUP BY t.{col} ORDER BY t.{col}", params).to_pandas()


def length_histogram(store: CorpusStore, column: str, edges: list[int],
                     flt: TrajectoryFilter | None = None) -> pd.DataFrame:
    """Trajectories per (outcome, length bin), as numpy.histogram counts them; lengths below 1 count as 1.

    Bin i holds edges[i] <= length < edges[i+1]; the last bin also holds its right edge.
    """
    if column not in LENGTHS:
        raise StoreError(f"no length histogram of {column!r}")
    if len(edges) < 2:
        return pd.DataFrame({"outcome": pd.Series(dtype=str), "bin": pd.Series(dtype="int64"),
                             "trajectories": pd.Series(dtype="int64")})
    clauses, params = store.filter_clauses(flt)
    x = f"greatest(coalesce(t.{quote_ident(column)}, 0), 1)"
    # the number of inner edges at or below x is the bin; the last edge closes the last bin
    return store.query(
        f"SELECT t.outcome, least(len(list_filter(?::BIGINT[], lambda e: e <= {x})), ?) - 1 AS bin, "
        f"count(*) AS trajectories FROM trajectories t WHERE {x} BETWEEN ? AND ?{where_sql(clauses, 'AND')} "
        f"GROUP BY ALL ORDER BY ALL",
        [list(map(int, edges[:-1])), len(edges) - 1, int(edges[0]), int(edges[-1]), *params]).to_pandas()
