"""Corpus aggregates: per-trajectory summaries of the steps, so corpus-wide metrics never re-read every step.

`aggregates/` is a derived dataset (derived/spec.py), built by `horizonlens index CORPUS` and brought up to date
by every import. Two tables computed by one pass of window functions over each trajectory's steps
(`agg_trajectories`, one row per trajectory; `agg_checks_by_j`, one row per trajectory and number j of earlier
failed checks) and rollups summed per cell of the facets (`agg_cube_*`, `agg_tools`); docs/corpus-format.md
lists what each holds. The horizon index t counts checked steps (1 = the first step with a check), as in
metrics/compounding.py. Facets and filters come from the `trajectories` view at query time, so one set of
aggregates serves every filter.
"""

from __future__ import annotations

from collections.abc import Callable

from horizonlens.corpus.files import corpus_dataset
from horizonlens.corpus.text import tool_names_sql
from horizonlens.derived.spec import DerivedSpec, DerivedTable, Rollup, UpdateReport, is_fresh, update
from horizonlens.storage.location import CorpusPath, as_location

AGGREGATES_DIR = "aggregates"

# One row per trajectory that has steps. `{src}` is the steps of one unit (or the whole `steps` view).
TRAJECTORY_SQL = f"""
WITH c AS (
  SELECT trajectory_id, CAST(NOT check_passed AS INTEGER) AS failed, row_number() OVER w AS t_idx,
         lag(CAST(NOT check_passed AS INTEGER)) OVER w AS prev_failed
  FROM {{src}} WHERE check_passed IS NOT NULL
  WINDOW w AS (PARTITION BY trajectory_id ORDER BY step)
), checks AS (
  SELECT trajectory_id, count(*) AS checks, CAST(sum(failed) AS BIGINT) AS failures,
         coalesce(min(t_idx) FILTER (WHERE failed = 1), max(t_idx)) AS duration,
         CAST(bool_or(failed = 1) AS INTEGER) AS event,
         count(*) FILTER (WHERE prev_failed = 0) AS after_pass_checks,
         CAST(coalesce(sum(failed) FILTER (WHERE prev_failed = 0), 0) AS BIGINT) AS after_pass_failures,
         count(*) FILTER (WHERE prev_failed = 1) AS after_fail_checks,
         CAST(coalesce(sum(failed) FILTER (WHERE prev_failed = 1), 0) AS BIGINT) AS after_fail_failures
  FROM c GROUP BY trajectory_id
), a AS (
  SELECT trajectory_id, check_passed, tool_calls[1].name AS tool,
         lead(check_passed) OVER w AS next_passed,
         lead(tool_calls[1].name, 1) OVER w AS tool1, lead(check_passed, 1) OVER w AS pass1,
         lead(tool_calls[1].name, 2) OVER w AS tool2, lead(check_passed, 2) OVER w AS pass2
  FROM {{src}} WHERE source = 'agent'
  WINDOW w AS (PARTITION BY trajectory_id ORDER BY step)
), recovery AS (
  SELECT trajectory_id, count(*) AS failed_agent_checks,
         count(*) FILTER (WHERE next_passed) AS next_check_passed,
         count(*) FILTER (WHERE tool1 = tool OR tool2 = tool) AS retried,
         count(*) FILTER (WHERE (tool1 = tool AND pass1) OR (tool2 = tool AND pass2)) AS recovered
  FROM a WHERE check_passed = false GROUP BY trajectory_id
), s AS (
  SELECT trajectory_id, count(*) AS steps, bool_or(is_decisive_error) AS has_decisive,
         min(step) FILTER (WHERE is_decisive_error) AS decisive_step,
         list(step ORDER BY step) FILTER (WHERE is_decisive_error) AS decisive_steps,
         min(step) FILTER (WHERE check_passed = false) AS first_failed_check,
         max(step) FILTER (WHERE check_passed = false) AS last_failed_check,
         list_sort(list_distinct(flatten(list({tool_names_sql('{src}')})))) AS tools
  FROM {{src}} GROUP BY trajectory_id
)
SELECT s.trajectory_id, s.steps, coalesce(checks.checks, 0) AS checks, coalesce(checks.failures, 0) AS failures,
       checks.duration, checks.event,
       coalesce(checks.after_pass_checks, 0) AS after_pass_checks,
       coalesce(checks.after_pass_failures, 0) AS after_pass_failures,
       coalesce(checks.after_fail_checks, 0) AS after_fail_checks,
       coalesce(checks.after_fail_failures, 0) AS after_fail_failures,
       coalesce(recovery.failed_agent_checks, 0) AS failed_agent_checks,
       coalesce(recovery.next_check_passed, 0) AS next_check_passed,
       coalesce(recovery.retried, 0) AS retried, coalesce(recovery.recovered, 0) AS recovered,
       s.has_decisive, s.decisive_step, s.decisive_steps, s.first_failed_check, s.last_failed_check, s.tools
FROM s LEFT JOIN checks USING (trajectory_id) LEFT JOIN recovery USING (trajectory_id)
ORDER BY s.trajectory_id"""

# One row per (trajectory, j): checks that had exactly j failed checks before them in the run.
CHECKS_BY_J_SQL = """
WITH c AS (
  SELECT trajectory_id, CAST(NOT check_passed AS INTEGER) AS failed,
         coalesce(sum(CAST(NOT check_passed AS INTEGER))
                    OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS failed_before
  FROM {src} WHERE check_passed IS NOT NULL
  WINDOW w AS (PARTITION BY trajectory_id ORDER BY step)
)
SELECT trajectory_id, CAST(failed_before AS BIGINT) AS j, count(*) AS checks, CAST(sum(failed) AS BIGINT) AS failures
FROM c GROUP BY ALL ORDER BY trajectory_id, j"""

# The trajectory columns the cubes are broken down by: every facet, and the outcome. A filter on these columns
# only (TrajectoryFilter.facet_only) is answered from the cubes; any other filter from one cell per trajectory.
DIMS = ("domain", "agent", "teacher", "source", "outcome")
_DIMS = ", ".join(f"t.{d}" for d in DIMS)

# Per-trajectory measures of the trajectory cells, as sums over the trajectories of a cell.
_TRAJECTORY_MEASURES = {
    "trajectories": ("count(*)", "1"),
    "tokens": ("sum(t.n_tokens)", "t.n_tokens"),
    "with_steps": ("count(a.trajectory_id)", "CAST(a.trajectory_id IS NOT NULL AS INTEGER)"),
    "with_checks": ("count(*) FILTER (WHERE a.checks > 0)", "CAST(coalesce(a.checks, 0) > 0 AS INTEGER)"),
    **{m: (f"sum(a.{m})", f"coalesce(a.{m}, 0)") for m in (
        "checks", "failures", "after_pass_checks", "after_pass_failures", "after_fail_checks", "after_fail_failures",
        "failed_agent_checks", "next_check_passed", "retried", "recovered")},
    "with_failed_agent_checks": ("count(*) FILTER (WHERE a.failed_agent_checks > 0)",
                                 "CAST(coalesce(a.failed_agent_checks, 0) > 0 AS INTEGER)"),
}
_JOIN = "trajectories t LEFT JOIN agg_trajectories a ON a.trajectory_id = t.trajectory_id"
CUBE_TRAJECTORIES_SQL = (f"SELECT {_DIMS}, t.n_steps, "
                         + ", ".join(f"CAST({cube if m == 'tokens' else f'coalesce({cube}, 0)'} AS BIGINT) AS {m}"
                                     for m, (cube, _) in _TRAJECTORY_MEASURES.items())
                         + f" FROM {_JOIN} GROUP BY ALL ORDER BY ALL")
CUBE_BY_J_SQL = (f"SELECT {_DIMS}, j.j, CAST(sum(j.checks) AS BIGINT) AS checks, "
                 f"CAST(sum(j.failures) AS BIGINT) AS failures FROM agg_checks_by_j j "
                 f"JOIN trajectories t ON j.trajectory_id = t.trajectory_id GROUP BY ALL ORDER BY ALL")
CUBE_FIRST_FAILURE_SQL = (f"SELECT {_DIMS}, a.duration, a.event, count(*) AS runs, "
                          f"CAST(sum(a.checks) AS BIGINT) AS checks, CAST(sum(a.failures) AS BIGINT) AS failures "
                          f"FROM agg_trajectories a JOIN trajectories t ON a.trajectory_id = t.trajectory_id "
                          f"WHERE a.checks > 0 GROUP BY ALL ORDER BY ALL")
TOOLS_SQL = ("SELECT name, count(*) AS trajectories FROM (SELECT unnest(tools) AS name FROM agg_trajectories) "
             "WHERE name IS NOT NULL GROUP BY name ORDER BY name")

SPEC = DerivedSpec(AGGREGATES_DIR, kind="corpus aggregates", tables=(
    DerivedTable("agg_trajectories", source="steps", sql=TRAJECTORY_SQL, unique_key=("trajectory_id",),
                 view="agg_trajectories", doc="one row per trajectory: check, failure, recovery and tool summaries"),
    DerivedTable("agg_checks_by_j", source="steps", sql=CHECKS_BY_J_SQL, view="agg_checks_by_j",
                 unique_key=("trajectory_id", "j"),
                 doc="checks and failures per (trajectory, number of earlier failed checks)"),
), rollups=(
    Rollup("cube_trajectories", CUBE_TRAJECTORIES_SQL, view="agg_cube_trajectories",
           doc="per (domain, agent, teacher, source, outcome, n_steps): trajectory counts and check sums"),
    Rollup("cube_by_j", CUBE_BY_J_SQL, view="agg_cube_by_j",
           doc="per (domain, agent, teacher, source, outcome, j): checks and failures after j earlier failures"),
    Rollup("cube_first_failure", CUBE_FIRST_FAILURE_SQL, view="agg_cube_first_failure",
           doc="per (domain, agent, teacher, source, outcome, first-failure time, event): runs, checks, failures"),
    Rollup("tools", TOOLS_SQL, view="agg_tools", doc="every tool name and how many trajectories call it"),
))
VIEWS = tuple(t.view for t in SPEC.tables if t.view)
ROLLUP_VIEWS = tuple(r.view for r in SPEC.rollups if r.view)

# The relations the metrics read, as `FROM <relation> t`: per kind, the cube (one row per cell of the
# dimensions, measures summed) and the same columns with one row per trajectory (every trajectory column
# too, so any filter applies). A metric is one SQL text over either.
CELLS = {
    "trajectories": ("agg_cube_trajectories",
                     "(SELECT t.*, " + ", ".join(f"{per} AS {m}" for m, (_, per) in _TRAJECTORY_MEASURES.items())
                     + f" FROM {_JOIN})"),
    "by_j": ("agg_cube_by_j", "(SELECT t.*, j.j, j.checks, j.failures FROM agg_checks_by_j j "
                              "JOIN trajectories t ON j.trajectory_id = t.trajectory_id)"),
    "first_failure": ("agg_cube_first_failure",
                      "(SELECT t.*, a.duration, a.event, 1 AS runs, a.checks, a.failures FROM agg_trajectories a "
                      "JOIN trajectories t ON a.trajectory_id = t.trajectory_id WHERE a.checks > 0)"),
}


def cells(kind: str, cube: bool) -> str:
    """The relation of one kind of cells: the precomputed cube, or one row per trajectory."""
    cube_view, per_trajectory = CELLS[kind]
    return cube_view if cube else per_trajectory


def aggregates_are_fresh(root: CorpusPath | str) -> bool:
    """The aggregates exist and summarise the corpus as it is now, by the current definitions."""
    return is_fresh(SPEC, corpus_dataset(root).snapshot())


def build_aggregates(root: CorpusPath | str, full: bool = False, threads: int | None = None,
                     log: Callable[[str], None] = lambda s: None) -> UpdateReport:
    """Build the aggregates of a corpus, or bring them up to date (only new or rewritten step files are read)."""
    return update(SPEC, corpus_dataset(as_location(root).resolve()), full=full, threads=threads, log=log)
