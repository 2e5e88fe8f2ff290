"""The store's read queries: one trajectory (its row, steps, check strip, text finds) and corpus-wide summaries.

Every query is parameterized: user input reaches DuckDB only as a bound parameter, and identifiers (columns to
group or count by) come from fixed allow-lists.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from horizonlens.corpus.text import like_pattern, step_text_match, tool_names_sql
from horizonlens.errors import StoreError
from horizonlens.query.base import Store
from horizonlens.query.listing import TRAJECTORY_COLUMNS
from horizonlens.storage.quoting import quote_ident

FACETS = ("domain", "agent", "teacher", "source", "outcome")


# --- one trajectory ---------------------------------------------------------------------------------------------
def trajectory(store: Store, trajectory_id: str) -> dict[str, Any] | None:
    """One trajectory's row as a dict, or None if the corpus has no such id."""
    table = store.query("SELECT * FROM trajectories WHERE trajectory_id = ?", [trajectory_id])
    return table.to_pylist()[0] if table.num_rows else None


def one_trajectory(store: Store, trajectory_id: str) -> tuple[str, list[Any]]:
    """Conditions (over `steps s`) that select one trajectory's steps, and their parameters.

    When the steps are hive-partitioned by a trajectory column (e.g. domain), the trajectory's value is looked
    up first so that one partition is read.
    """
    sql = "s.trajectory_id = ?"
    params: list[Any] = [trajectory_id]
    keys = [k for k in store.partitions.get("steps", []) if k in TRAJECTORY_COLUMNS]
    if keys:
        row = store.query(f"SELECT {', '.join(quote_ident(k) for k in keys)} FROM trajectories "
                          f"WHERE trajectory_id = ?", [trajectory_id]).to_pylist()
        for k in keys if row else []:
            sql += f" AND CAST(s.{quote_ident(k)} AS VARCHAR) = ?"
            params.append(str(row[0][k]))
    return sql, params


def steps(store: Store, trajectory_id: str, start: int = 0, stop: int | None = None) -> pa.Table:
    """The steps of one trajectory in order; [start, stop) windows a long one."""
    where, params = one_trajectory(store, trajectory_id)
    sql = f"SELECT * FROM steps s WHERE {where} AND s.step >= ?"
    params.append(int(start))
    if stop is not None:
        sql += " AND s.step < ?"
        params.append(int(stop))
    return store.query(sql + " ORDER BY s.step", params)


def check_strip(store: Store, trajectory_id: str) -> pa.Table:
    """Per step: source, check outcome, error label, decisive flag — the error timeline's data."""
    where, params = one_trajectory(store, trajectory_id)
    return store.query(f"SELECT s.step, s.source, s.check_passed, s.error_label, s.is_decisive_error, "
                       f"{tool_names_sql('s')} AS tools FROM steps s WHERE {where} ORDER BY s.step", params)


def find_in_trajectory(store: Store, trajectory_id: str, text: str) -> list[int]:
    """Steps of one trajectory whose content contains `text` (case-insensitive, literal)."""
    match, n = step_text_match("s")
    where, params = one_trajectory(store, trajectory_id)
    table = store.query(f"SELECT s.step FROM steps s WHERE {where} AND {match} ORDER BY s.step",
                        [*params, *([like_pattern(text)] * n)])
    return table.column("step").to_pylist()


def trials_of(store: Store, task_id: str) -> list[str]:
    """The trajectories that are trials of one task, in trial order."""
    table = store.query("SELECT trajectory_id FROM trajectories WHERE task_id = ? ORDER BY trial, trajectory_id",
                        [task_id])
    return table.column("trajectory_id").to_pylist()


# --- the corpus -------------------------------------------------------------------------------------------------
def summary(store: Store) -> dict[str, Any]:
    """Corpus totals: trajectories, steps, tokens, outcome and failed-check rates."""
    row: dict[str, Any] = store.query(
        "SELECT count(*) AS trajectories, sum(n_steps)::BIGINT AS steps, sum(n_tokens)::BIGINT AS tokens, "
        "max(n_tokens) AS max_tokens, max(n_steps) AS max_steps, "
        "avg(CASE WHEN outcome = 'success' THEN 1.0 WHEN outcome = 'failure' THEN 0.0 END) AS success_rate, "
        "avg(CASE WHEN n_failed_checks > 0 THEN 1.0 ELSE 0.0 END) AS share_with_failed_checks, "
        "count(DISTINCT task_id) AS tasks FROM trajectories").to_pylist()[0]
    return row


def by_group(store: Store, column: str = "domain") -> pa.Table:
    """Outcome and failed-check rates per domain/agent/teacher/source."""
    if column not in FACETS:
        raise StoreError(f"cannot group by {column!r}")
    col = quote_ident(column)
    store.aggregates()
    # one pass over the cube (a row per facet cell and step count); the median step count comes from the
    # step-count histogram of each group, interpolated as DuckDB's median (quantile_cont) does
    return store.query(f"""
        WITH h AS (SELECT t.{col} AS g, t.n_steps AS x, sum(t.trajectories) AS n FROM agg_cube_trajectories t
                   WHERE t.n_steps IS NOT NULL GROUP BY ALL),
        c AS (SELECT g, x, sum(n) OVER (PARTITION BY g ORDER BY x) AS cum, sum(n) OVER (PARTITION BY g) AS total
              FROM h),
        m AS (SELECT g, min(x) FILTER (WHERE cum > floor((total - 1) / 2)) AS lo,
                     min(x) FILTER (WHERE cum > ceil((total - 1) / 2)) AS hi, any_value(total) AS total
              FROM c GROUP BY g)
        SELECT t.{col} AS {col}, CAST(sum(t.trajectories) AS BIGINT) AS trajectories,
               CAST(sum(t.trajectories) FILTER (WHERE t.outcome = 'success') AS DOUBLE)
                 / sum(t.trajectories) FILTER (WHERE t.outcome IN ('success', 'failure')) AS success_rate,
               sum(t.failures) / nullif(sum(t.checks), 0) AS failed_check_rate,
               any_value(CAST(m.lo AS DOUBLE) + (m.hi - m.lo) * ((m.total - 1) / 2 - floor((m.total - 1) / 2)))
                 AS median_steps,
               CAST(sum(t.tokens) AS BIGINT) AS tokens
        FROM agg_cube_trajectories t LEFT JOIN m ON m.g IS NOT DISTINCT FROM t.{col}
        GROUP BY t.{col} ORDER BY t.{col}""")


def length_histogram(store: Store, column: str, edges: list[int]) -> pa.Table:
    """Trajectories per (outcome, length bin), as numpy.histogram counts them; lengths below 1 count as 1.

    Bin i holds edges[i] <= length < edges[i+1]; the last bin also holds its right edge.
    """
    if column not in ("n_steps", "n_tokens"):
        raise StoreError(f"no length histogram of {column!r}")
    if len(edges) < 2:
        return pa.table({"outcome": pa.array([], pa.string()), "bin": pa.array([], pa.int64()),
                         "trajectories": pa.array([], pa.int64())})
    x = f"greatest(coalesce(t.{quote_ident(column)}, 0), 1)"
    # the number of inner edges at or below x is the bin; the last edge closes the last bin
    return store.query(
        f"SELECT t.outcome, least(len(list_filter(?::BIGINT[], lambda e: e <= {x})), ?) - 1 AS bin, "
        f"count(*) AS trajectories FROM trajectories t WHERE {x} BETWEEN ? AND ? GROUP BY ALL ORDER BY ALL",
        [list(map(int, edges[:-1])), len(edges) - 1, int(edges[0]), int(edges[-1])])


def distinct(store: Store, column: str) -> list[str]:
    """The values a facet column takes in this corpus, sorted (for filter choices)."""
    if column not in FACETS:
        raise StoreError(f"cannot list values of {column!r}")
    # the cube has a row for every combination of facet values that occurs: a few thousand rows, not 1M
    source = "agg_cube_trajectories" if store.has_aggregates else "trajectories"
    table = store.query(f"SELECT DISTINCT {quote_ident(column)} AS v FROM {source} WHERE v IS NOT NULL ORDER BY v")
    return table.column("v").to_pylist()


def tools(store: Store) -> list[str]:
    """Names of every tool some step calls, sorted."""
    store.aggregates()  # a rollup of the per-trajectory tool lists, instead of every step's tool calls
    return store.query("SELECT name FROM agg_tools ORDER BY name").column("name").to_pylist()
