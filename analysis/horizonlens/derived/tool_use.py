"""Tool-use summaries: per run and tool, and per run and stretch of the horizon, kept as a derived dataset.

Every tool call of a run is one element of its *call sequence* (steps in order, calls in the order the step
made them). Per call:

- `failed`: the step's check failed, or the call's own observation starts with "error" (τ-bench and the
  sample's tools answer a bad call with "Error: ...");
- `repeated`: its name and arguments equal those of the run's previous call;
- `in_loop`: it lies inside a *loop*, a cycle of PERIOD_MIN..PERIOD_MAX calls with identical arguments that
  repeats at least twice back to back (A, B, A, B), whose calls are not all the same (that is a repeat).

Arguments are compared as written, trimmed (two spellings of the same JSON count as two calls). The derived
dataset `tool_use/` holds two tables, each computed unit by unit from the steps (derived/spec.py):

- `tool_use_runs`: one row per (trajectory, tool): calls, failed, repeated, in_loop;
- `tool_use_bins`: one row per (trajectory, horizon bin): the same counts, where the bin is the call's step
  as a tenth of the run's length (0: the first tenth, 9: the last).

Readers use the files when they are fresh (`is_fresh`), else the same SQL over the `steps` view
(`relation_sql`), so the figures never depend on whether `horizonlens index` ran.
"""

from __future__ import annotations

from collections.abc import Callable

from horizonlens.corpus.files import corpus_dataset
from horizonlens.derived.spec import DerivedSpec, DerivedTable, UpdateReport, update
from horizonlens.storage.location import CorpusPath, as_location

TOOL_USE_DIR = "tool_use"
PERIOD_MIN, PERIOD_MAX = 2, 4  # loop periods looked for: A,B,A,B up to A,B,C,D,A,B,C,D
BINS = 10  # stretches of the horizon (tenths of a run's steps)


def _loop_start(period: int) -> str:
    """SQL: the call starts a loop of this period (its next `period` calls equal the `period` after them)."""
    same = " AND ".join(f"k{j} = k{j + period}" for j in range(period))
    varied = " OR ".join(f"k{j} <> k{j + 1}" for j in range(period - 1))
    return f"coalesce(({same}) AND ({varied}), false)"


def _sequence_sql() -> str:
    """A SELECT over `{src}` (steps), one row per tool call with its flags; struct braces doubled for format()."""
    span = 2 * PERIOD_MAX
    leads = ", ".join(f"lead(key, {j}) OVER w AS k{j}" for j in range(1, span))
    starts = ", ".join(f"{_loop_start(p)} AS start{p}" for p in range(PERIOD_MIN, PERIOD_MAX + 1))
    covered = " OR ".join(f"bool_or(start{p}) OVER (PARTITION BY trajectory_id ORDER BY n ROWS BETWEEN "
                          f"{2 * p - 1} PRECEDING AND CURRENT ROW)" for p in range(PERIOD_MIN, PERIOD_MAX + 1))
    return f"""
WITH s AS (
  SELECT trajectory_id, step, max(step) OVER (PARTITION BY trajectory_id) AS last_step,
         list_transform(tool_calls, lambda c, i: {{{{'i': i, 'tool': c.name,
           'key': hash(c.name, coalesce(trim(c.arguments), '')),
           'failed': coalesce(check_passed = false, false) OR coalesce(starts_with(lower(ltrim(
               list_filter(observations, lambda o: o.call_id = c.id)[1].content)), 'error'), false)}}}}) AS calls
  FROM {{src}}
), c AS (
  SELECT trajectory_id, step, last_step, unnest(calls, recursive := true) FROM s WHERE len(calls) > 0
), seq AS (
  SELECT trajectory_id, step, last_step, tool, failed, key, row_number() OVER w AS n,
         coalesce(key = lag(key) OVER w, false) AS repeated, key AS k0, {leads}
  FROM c WINDOW w AS (PARTITION BY trajectory_id ORDER BY step, i)
), flagged AS (
  SELECT *, {starts} FROM seq
)
SELECT trajectory_id, step, last_step, tool, failed, repeated, {covered} AS in_loop FROM flagged
"""


_COUNTS = ("count(*) AS calls, count(*) FILTER (WHERE failed) AS failed, count(*) FILTER (WHERE repeated) AS repeated, "
           "count(*) FILTER (WHERE in_loop) AS in_loop")

RUNS_SQL = f"SELECT trajectory_id, tool, {_COUNTS} FROM ({_sequence_sql()}) GROUP BY ALL"
BINS_SQL = (f"SELECT trajectory_id, CAST(least({BINS - 1}, floor({BINS} * step / (last_step + 1))) AS INTEGER) AS bin, "
            f"{_COUNTS} FROM ({_sequence_sql()}) GROUP BY ALL")

SPEC = DerivedSpec(TOOL_USE_DIR, kind="tool use", tables=(
    DerivedTable("tool_use_runs", source="steps", sql=RUNS_SQL, unique_key=("trajectory_id", "tool"),
                 doc="per (trajectory, tool): calls, failed, repeated, in_loop"),
    DerivedTable("tool_use_bins", source="steps", sql=BINS_SQL, unique_key=("trajectory_id", "bin"),
                 doc="per (trajectory, tenth of the horizon): calls, failed, repeated, in_loop"),
))


def build_tool_use(root: CorpusPath | str, full: bool = False, threads: int | None = None,
                   log: Callable[[str], None] = lambda s: None) -> UpdateReport:
    """Build, or bring up to date, the tool-use summaries of a corpus."""
    return update(SPEC, corpus_dataset(as_location(root)), full=full, threads=threads, log=log)
