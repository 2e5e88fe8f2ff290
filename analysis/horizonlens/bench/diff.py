"""Run-set comparison at scale: `horizonlens diff` of two agents beside the floor of any paired comparison.

The floor is what every paired comparison must read: each agent's trials and successes per task, joined on
the task. It runs as raw DuckDB SQL over the same Parquet files (a fresh connection, metadata cache on) and
as a Polars lazy scan. Horizon Lens's diff does that and more (survival cells, the flipped tasks' best pairs
from their steps, bootstrap intervals), so its ratio to the floor is what the extra statistics cost. The
diff without the pairs' steps is timed too, to show what reading the steps of the flipped tasks adds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import duckdb

from horizonlens.bench.timing import interleaved
from horizonlens.metrics.runsets import compare
from horizonlens.query.runsets import RunSet
from horizonlens.query.store import CorpusStore
from horizonlens.storage.quoting import sql_string

AGENTS = ("a1-student-ckpt-2k", "a1-student-ckpt-4k")  # two student checkpoints of the generated sample

_PAIRS_SQL = """
WITH per AS (
  SELECT task_id, agent, count(*) AS n, sum(CAST(outcome = 'success' AS INTEGER)) AS c FROM {src}
  WHERE agent IN (?, ?) AND task_id IS NOT NULL AND outcome IN ('success', 'failure') GROUP BY ALL
)
SELECT count(*) FROM per a JOIN per b ON a.task_id = b.task_id AND a.agent = ? AND b.agent = ?"""


def diff_store(store: CorpusStore, divergence: bool = True, agents: tuple[str, str] = AGENTS) -> int:
    """`horizonlens diff` of two agents through the store; its common task count."""
    result = compare(store, RunSet.of_facet("agent", agents[0]), RunSet.of_facet("agent", agents[1]),
                     divergence=divergence)
    return int(result.summary["common_tasks"])


def pairs_duckdb(con: duckdb.DuckDBPyConnection, root: Path, agents: tuple[str, str] = AGENTS) -> int:
    """The floor in raw DuckDB SQL: per-task trials and successes of both agents, joined on the task."""
    src = f"read_parquet({sql_string(str(root / 'trajectories' / '**' / '*.parquet'))}, hive_partitioning = false)"
    return int(con.execute(_PAIRS_SQL.format(src=src), [*agents, *agents]).fetchall()[0][0])


def pairs_polars(root: Path, agents: tuple[str, str] = AGENTS) -> int:
    """The floor as a Polars lazy scan."""
    import polars as pl

    per = (pl.scan_parquet(str(root / "trajectories" / "**" / "*.parquet"), hive_partitioning=False)
           .filter(pl.col("agent").is_in(list(agents)) & pl.col("task_id").is_not_null()
                   & pl.col("outcome").is_in(["success", "failure"]))
           .group_by("task_id", "agent")
           .agg(pl.len().alias("n"), (pl.col("outcome") == "success").sum().alias("c")))
    a = per.filter(pl.col("agent") == agents[0])
    b = per.filter(pl.col("agent") == agents[1])
    return int(a.join(b, on="task_id").select(pl.len()).collect().item())


def bench_diff(store: CorpusStore, repeats: int = 3) -> dict[str, Any]:
    """The diff of two agents beside the floor, interleaved; every variant's common task count checked first."""
    root = store.root
    if not isinstance(root, Path):
        raise ValueError(f"{root}: the diff benchmark runs on a local corpus")
    con = duckdb.connect(":memory:")
    con.execute("SET parquet_metadata_cache = true")
    variants: dict[str, Callable[[], Any]] = {
        "horizonlens": lambda: diff_store(store), "horizonlens_no_pairs": lambda: diff_store(store, False),
        "duckdb_raw": lambda: pairs_duckdb(con, root)}
    try:
        import polars  # noqa: F401 - the peer is optional (the bench extra)

        variants["polars"] = lambda: pairs_polars(root)
    except ImportError:
        pass
    answers = {name: fn() for name, fn in variants.items()}
    if len(set(answers.values())) != 1:
        raise AssertionError(f"diff: the variants disagree on the common tasks: {answers}")
    timings = interleaved(variants, repeats=repeats)
    con.close()
    floor = timings["duckdb_raw"]["median_s"]
    return {"agents": list(AGENTS), "common_tasks": next(iter(answers.values())), "timings": timings,
            "ratio_to_floor": timings["horizonlens"]["median_s"] / floor if floor else None}


def report_lines(results: dict[str, Any]) -> list[str]:
    """The diff section of RESULTS.md: Horizon Lens's diff and the floor per corpus size."""
    rows = [(n, c["diff"]) for n, c in results.get("corpora", {}).items() if c.get("diff")]
    if not rows:
        return []
    lines = ["", "## Run-set diff of two agents", "",
             "`horizonlens diff` of two student checkpoints (every statistic, the flipped tasks' best pairs from their "
             "steps) beside the floor of any paired comparison: each agent's trials and successes per task, joined on "
             "the task (raw DuckDB over the same Parquet, and Polars lazy). Median (p95).", "",
             "| trajectories | common tasks | diff | diff without the pairs' steps | DuckDB floor | Polars floor | "
             "diff ÷ DuckDB floor |", "|---|---|---|---|---|---|---|"]

    def cell(t: dict[str, Any], key: str) -> str:
        x = t.get(key)
        return "—" if not x else f"{x['median_s'] * 1000:,.0f} ms ({x['p95_s'] * 1000:,.0f})"

    for n, d in rows:
        t = d["timings"]
        lines.append(f"| {int(n):,} | {d['common_tasks']:,} | {cell(t, 'horizonlens')} | "
                     f"{cell(t, 'horizonlens_no_pairs')} | {cell(t, 'duckdb_raw')} | {cell(t, 'polars')} | "
                     f"{d['ratio_to_floor']:.1f}× |")
    return lines
