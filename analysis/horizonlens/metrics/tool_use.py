"""Tool use, and the "tool overuse" the Agents-A1 critics name: calls, errors, repeats, loops, overuse.

Per call (derived/tool_use.py says how each flag is computed): `failed` (its step's check failed, or its
observation is an error), `repeated` (same name and arguments as the run's previous call) and `in_loop` (inside
a cycle of 2-4 calls with identical arguments that repeats back to back: A, B, A, B).

**Overuse** compares a run with the successful runs of the same task: a run's overuse is its calls beyond the
median calls of those successful runs (0 when it made no more), per tool the same with that tool's calls (a
successful run that never called the tool counts as 0 calls). A task without a successful run has no
reference, so its runs' overuse is missing, not 0.

Every table is computed from the per-(run, tool) and per-(run, horizon bin) summaries, which come from the
derived dataset when it is fresh and from the steps otherwise.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from horizonlens.derived.spec import is_fresh, relation_sql
from horizonlens.derived.tool_use import BINS, SPEC
from horizonlens.query.filters import TrajectoryFilter, where_sql
from horizonlens.query.store import CorpusStore
from horizonlens.storage.location import read_table

GROUPS = ("agent", "teacher", "domain")


def summaries(store: CorpusStore) -> dict[str, pa.Table]:
    """The per-(run, tool) and per-(run, bin) summaries: the derived files if fresh, else computed from the steps."""
    out: dict[str, pa.Table] = {}
    fresh = is_fresh(SPEC, store.corpus_snapshot)
    snap = SPEC.dataset(store.root).snapshot() if fresh else None
    for table in SPEC.tables:
        paths = snap.paths(table.name) if snap is not None else []
        if snap is not None and paths:
            out[table.name] = pa.concat_tables([read_table(p).replace_schema_metadata(None) for p in paths],
                                               promote_options="permissive")
        else:
            out[table.name] = store.query(relation_sql(SPEC, table.name, "steps"))
    return out


def _cursor(store: CorpusStore, tables: dict[str, pa.Table]) -> duckdb.DuckDBPyConnection:
    cur = store.cursor()
    for name, table in tables.items():
        cur.register(name, table)
    return cur


def tool_use(store: CorpusStore, flt: TrajectoryFilter | None = None,
             tables: dict[str, pa.Table] | None = None) -> dict[str, Any]:
    """Every tool-use table for the runs a filter selects.

    Returns `summary` (a dict: calls, runs, repeated_calls, runs_with_repeats, runs_with_loops, loop_calls,
    failed_calls, overuse_calls, runs_with_overuse, runs_with_reference), `tools` (per tool), `runs` (per run,
    with its facets), `by_<facet>` for agent, teacher and domain, and `horizon` (per tenth of the runs' steps).
    """
    tables = tables if tables is not None else summaries(store)
    clauses, params = store.filter_clauses(flt)
    where = where_sql(clauses, "AND")
    cur = _cursor(store, tables)
    try:
        runs = cur.sql(f"""
          WITH r AS (
            SELECT u.*, t.task_id, t.outcome FROM tool_use_runs u JOIN trajectories t USING (trajectory_id)
            WHERE true{where}),
          per_run AS (SELECT trajectory_id, any_value(task_id) AS task_id, sum(calls) AS calls FROM r GROUP BY 1),
          reference AS (
            SELECT t.task_id, median(coalesce(p.calls, 0)) AS median_calls, count(*) AS successes
            FROM trajectories t LEFT JOIN per_run p USING (trajectory_id)
            WHERE t.outcome = 'success' AND t.task_id IN (SELECT task_id FROM per_run) GROUP BY 1)
          SELECT t.trajectory_id, t.task_id, t.agent, t.teacher, t.domain, t.outcome, t.n_steps,
                 CAST(sum(r.calls) AS BIGINT) AS calls, CAST(sum(r.failed) AS BIGINT) AS failed,
                 CAST(sum(r.repeated) AS BIGINT) AS repeated, CAST(sum(r.in_loop) AS BIGINT) AS loop_calls,
                 any_value(ref.median_calls) AS reference_calls,
                 greatest(0, sum(r.calls) - any_value(ref.median_calls)) AS overuse
          FROM r JOIN trajectories t USING (trajectory_id) LEFT JOIN reference ref ON ref.task_id = t.task_id
          GROUP BY ALL ORDER BY t.trajectory_id""", params=params or None).df()
        tools = cur.sql(f"""
          WITH r AS (
            SELECT u.*, t.task_id FROM tool_use_runs u JOIN trajectories t USING (trajectory_id) WHERE true{where}),
          task_tools AS (SELECT DISTINCT task_id, tool FROM r),
          grid AS (
            SELECT tt.task_id, tt.tool, coalesce(u.calls, 0) AS calls
            FROM trajectories t JOIN task_tools tt ON tt.task_id = t.task_id
            LEFT JOIN tool_use_runs u ON u.trajectory_id = t.trajectory_id AND u.tool = tt.tool
            WHERE t.outcome = 'success'),
          reference AS (SELECT task_id, tool, median(calls) AS median_calls FROM grid GROUP BY ALL)
          SELECT r.tool, CAST(sum(r.calls) AS BIGINT) AS calls, count(DISTINCT r.trajectory_id) AS runs,
                 sum(r.failed) / sum(r.calls) AS error_rate, CAST(sum(r.repeated) AS BIGINT) AS repeated_calls,
                 CAST(sum(r.in_loop) AS BIGINT) AS loop_calls,
                 count(DISTINCT r.trajectory_id) FILTER (WHERE r.repeated > 0) AS runs_with_repeats,
                 count(DISTINCT r.trajectory_id) FILTER (WHERE r.in_loop > 0) AS runs_with_loops,
                 sum(greatest(0, r.calls - ref.median_calls)) AS overuse_calls,
                 sum(r.calls) / count(DISTINCT r.trajectory_id) AS calls_per_run
          FROM r LEFT JOIN reference ref USING (task_id, tool)
          GROUP BY r.tool ORDER BY calls DESC, r.tool""", params=params or None).df()
        horizon = cur.sql(f"""
          SELECT b.bin, CAST(sum(b.calls) AS BIGINT) AS calls, sum(b.failed) / sum(b.calls) AS error_rate,
                 sum(b.repeated) / sum(b.calls) AS repeated_share, sum(b.in_loop) / sum(b.calls) AS loop_share
          FROM tool_use_bins b JOIN trajectories t USING (trajectory_id) WHERE true{where}
          GROUP BY b.bin ORDER BY b.bin""", params=params or None).df()
    finally:
        cur.close()
    horizon["position"] = (horizon["bin"] + 0.5) / BINS
    out: dict[str, Any] = {"summary": summary(runs), "tools": tools, "runs": runs, "horizon": horizon}
    for facet in GROUPS:
        out[f"by_{facet}"] = by_group(runs, facet)
    return out


def summary(runs: pd.DataFrame) -> dict[str, Any]:
    """Corpus-level counts over per-run rows (what `metrics --json` reports as `tool_use`)."""
    has_ref = runs["reference_calls"].notna() if not runs.empty else pd.Series(dtype=bool)
    return {"runs": int(len(runs)), "calls": int(runs["calls"].sum()), "failed_calls": int(runs["failed"].sum()),
            "repeated_calls": int(runs["repeated"].sum()), "runs_with_repeats": int((runs["repeated"] > 0).sum()),
            "loop_calls": int(runs["loop_calls"].sum()), "runs_with_loops": int((runs["loop_calls"] > 0).sum()),
            "runs_with_reference": int(has_ref.sum()),
            "overuse_calls": float(runs.loc[has_ref, "overuse"].sum()) if len(runs) else 0.0,
            "runs_with_overuse": int((runs.loc[has_ref, "overuse"] > 0).sum()) if len(runs) else 0}


def by_group(runs: pd.DataFrame, facet: str) -> pd.DataFrame:
    """Per value of a facet (agent, teacher, domain): runs, calls per run, error and repeat rates, loops, overuse."""
    if facet not in GROUPS:
        raise ValueError(f"tool use is grouped by {', '.join(GROUPS)}, not {facet!r}")
    columns = [facet, "runs", "calls_per_run", "error_rate", "repeated_share", "runs_with_repeats_share",
               "runs_with_loops_share", "overuse_per_run", "runs_with_overuse_share"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    r = runs.assign(key=runs[facet].fillna("(none)"), has_repeat=runs["repeated"] > 0, has_loop=runs["loop_calls"] > 0,
                    over=runs["overuse"] > 0)
    g = r.groupby("key", sort=True)
    out = pd.DataFrame({
        facet: list(g.groups), "runs": g.size().to_numpy(), "calls_per_run": g["calls"].mean().to_numpy(),
        "error_rate": (g["failed"].sum() / g["calls"].sum()).to_numpy(),
        "repeated_share": (g["repeated"].sum() / g["calls"].sum()).to_numpy(),
        "runs_with_repeats_share": g["has_repeat"].mean().to_numpy(),
        "runs_with_loops_share": g["has_loop"].mean().to_numpy(),
        "overuse_per_run": g["overuse"].mean().to_numpy(),
        "runs_with_overuse_share": r[r["overuse"].notna()].groupby("key")["over"].mean().reindex(list(g.groups))
        .to_numpy()})
    return out[columns]
