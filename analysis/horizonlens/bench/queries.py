"""Query-layer benchmarks: each query through Horizon Lens beside the peers a competent user would pick instead.

Three queries (explore, search_exact, open_trajectory), each checked to give the same answer in every variant
before it is timed, beside Polars lazy scans, raw DuckDB SQL over the same Parquet, pandas, and (Explore only,
at 10k) one JSON file per trajectory. bench/README.md says what each query and peer does.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from horizonlens.bench.timing import interleaved
from horizonlens.corpus.text import like_pattern, step_text_match
from horizonlens.query.store import CorpusStore, TrajectoryFilter
from horizonlens.storage.quoting import sql_string

EXPLORE = TrajectoryFilter(domains=["search", "engineering"], outcomes=["failure"], min_steps=10)
NEEDLE = "insufficient balance"  # occurs in a small share of tool_calling observations
PAGE = 50
PANDAS_SEARCH_MAX = 100_000  # above this, pandas would hold every step's text in memory


def _files(root: Path, table: str) -> str:
    """The glob of one corpus table's Parquet files (hive folders included)."""
    return str(root / table / "**" / "*.parquet")


def explore_store(store: CorpusStore) -> int:
    """The Explore page's query through the store: filter, sort, first page; the match count."""
    return store.list_trajectories(EXPLORE, sort="n_steps", descending=True, offset=0, limit=PAGE).total


def explore_pandas(root: Path) -> int:
    """Baseline: the same Explore query in pandas over the trajectories Parquet files."""
    df = pd.read_parquet(root / "trajectories", columns=[
        "trajectory_id", "task_id", "trial", "source", "domain", "agent", "teacher", "outcome", "reward", "n_steps",
        "n_tokens", "n_failed_checks", "first_failed_step", "started_at", "duration_s", "cost_usd"],
        partitioning=None)  # the domain is a column in the files; do not also derive it from the paths
    hit = df[df["domain"].astype(str).isin(EXPLORE.domains) & df["outcome"].isin(EXPLORE.outcomes)
             & (df["n_steps"] >= EXPLORE.min_steps)]
    hit.sort_values(["n_steps", "trajectory_id"], ascending=[False, True]).head(PAGE)
    return len(hit)


def explore_polars(root: Path) -> int:
    """Peer: a Polars lazy scan (filters and columns pushed into the Parquet reader), page and count together."""
    import polars as pl

    lf = pl.scan_parquet(_files(root, "trajectories"), hive_partitioning=False).filter(
        pl.col("domain").is_in(EXPLORE.domains) & pl.col("outcome").is_in(EXPLORE.outcomes)
        & (pl.col("n_steps") >= EXPLORE.min_steps))
    _, count = pl.collect_all([lf.sort(["n_steps", "trajectory_id"], descending=[True, False]).head(PAGE),
                               lf.select(pl.len())])
    return int(count.item())


def explore_duckdb(con: duckdb.DuckDBPyConnection, root: Path) -> int:
    """Peer: raw DuckDB SQL over the same Parquet files (page, then count)."""
    src = f"read_parquet({sql_string(_files(root, 'trajectories'))}, hive_partitioning = false)"
    where = "domain IN (?, ?) AND outcome = ? AND n_steps >= ?"
    params = [*EXPLORE.domains, *EXPLORE.outcomes, EXPLORE.min_steps]
    con.execute(f"SELECT * FROM {src} WHERE {where} ORDER BY n_steps DESC, trajectory_id LIMIT {PAGE}",
                params).fetchall()
    return int(con.execute(f"SELECT count(*) FROM {src} WHERE {where}", params).fetchall()[0][0])


def explore_json(json_dir: Path) -> int:
    """What a file-based viewer does per request: read every JSON file and filter."""
    rows = []
    for f in sorted(json_dir.glob("*.json")):
        t = json.loads(f.read_text())
        if t["domain"] in EXPLORE.domains and t["outcome"] in EXPLORE.outcomes and t["n_steps"] >= EXPLORE.min_steps:
            rows.append((t["n_steps"], t["trajectory_id"]))
    rows.sort(key=lambda r: (-r[0], r[1]))
    return len(rows)


def fts_store(store: CorpusStore, mode: str = "exact", needle: str = NEEDLE) -> int:
    """Mode exact: literal substring (through the search index when it is up to date); words: all words.

    Each call searches afresh: the store would otherwise answer a repeated text from the hits it resolved before.
    """
    store.lists.forget_searches()
    return store.list_trajectories(TrajectoryFilter(text=needle, text_mode=mode), limit=PAGE).total


def search_polars(root: Path, needle: str = NEEDLE) -> int:
    """Peer: Polars lazy scans lower-casing each text field and looking for the literal text; page and count."""
    import polars as pl

    n = needle.lower()

    def has(expr: Any) -> Any:
        return expr.str.to_lowercase().str.contains(n, literal=True).fill_null(False)

    calls = pl.col("tool_calls").list.eval(pl.element().struct.field("name") + " "
                                           + pl.element().struct.field("arguments")).list.join(" ")
    observations = pl.col("observations").list.eval(pl.element().struct.field("content")).list.join(" ")
    steps = pl.scan_parquet(_files(root, "steps"), hive_partitioning=False).filter(
        has(pl.col("reasoning")) | has(pl.col("message")) | has(pl.col("knowledge")) | has(calls)
        | has(observations)).select("trajectory_id").unique()
    trajs = pl.scan_parquet(_files(root, "trajectories"), hive_partitioning=False)
    hits = pl.concat([trajs.filter(has(pl.col("task"))), trajs.join(steps, on="trajectory_id", how="semi")]
                     ).unique("trajectory_id")
    _, count = pl.collect_all([hits.sort("started_at").head(PAGE), hits.select(pl.len())])
    return int(count.item())


def search_duckdb(con: duckdb.DuckDBPyConnection, root: Path, needle: str = NEEDLE) -> int:
    """Peer: the exact search as raw DuckDB SQL (ILIKE on every field) over the same Parquet files."""
    pattern = like_pattern(needle)
    match, k = step_text_match("s")
    steps = f"read_parquet({sql_string(_files(root, 'steps'))}, hive_partitioning = false)"
    trajs = f"read_parquet({sql_string(_files(root, 'trajectories'))}, hive_partitioning = false)"
    where = f"t.task ILIKE ? ESCAPE '\\' OR t.trajectory_id IN (SELECT s.trajectory_id FROM {steps} s WHERE {match})"
    rows = con.execute(f"SELECT t.trajectory_id, count(*) OVER () AS total FROM {trajs} t WHERE {where} "
                       f"ORDER BY t.started_at LIMIT {PAGE}", [pattern] * (k + 1)).fetchall()
    return int(rows[0][1]) if rows else 0


def search_pandas(root: Path, needle: str = NEEDLE) -> int:
    """Baseline: read the text columns into pandas and look for the literal text field by field."""
    n = needle.lower()
    steps = pq.read_table(root / "steps", columns=["trajectory_id", "reasoning", "message", "knowledge",
                                                   "tool_calls", "observations"], partitioning=None).to_pandas()
    hit = pd.Series(False, index=steps.index)
    for col in ("reasoning", "message", "knowledge"):
        hit |= steps[col].str.lower().str.contains(n, regex=False, na=False).astype(bool)
    calls = steps["tool_calls"].map(lambda cs: " ".join(f"{c['name']} {c['arguments']}" for c in cs if c["name"]
                                                        is not None and c["arguments"] is not None))
    obs = steps["observations"].map(lambda os_: " ".join(o["content"] for o in os_ if o["content"] is not None))
    hit |= calls.str.lower().str.contains(n, regex=False) | obs.str.lower().str.contains(n, regex=False)
    ids = set(steps.loc[hit, "trajectory_id"])
    trajs = pd.read_parquet(root / "trajectories", columns=["trajectory_id", "task", "started_at"],
                            partitioning=None)
    found = trajs[trajs["trajectory_id"].isin(ids) | trajs["task"].str.lower().str.contains(n, regex=False)]
    found.sort_values("started_at").head(PAGE)
    return len(found)


def open_store_steps(store: CorpusStore, tid: str) -> int:
    """Open one trajectory through the store (what the Trajectory page reads); its step count."""
    return store.steps(tid).num_rows


def open_polars(root: Path, tid: str) -> int:
    """Peer: a Polars lazy scan with the trajectory id pushed down."""
    import polars as pl

    return pl.scan_parquet(_files(root, "steps"), hive_partitioning=False).filter(
        pl.col("trajectory_id") == tid).sort("step").collect().height


def open_duckdb(con: duckdb.DuckDBPyConnection, root: Path, tid: str) -> int:
    """Peer: raw DuckDB SQL over the steps files."""
    return len(con.execute(f"SELECT * FROM read_parquet({sql_string(_files(root, 'steps'))}, hive_partitioning = "
                           f"false) WHERE trajectory_id = ? ORDER BY step", [tid]).fetchall())


def open_pandas(root: Path, tid: str) -> int:
    """Baseline: open one trajectory with a pandas Parquet filter."""
    return len(pd.read_parquet(root / "steps", filters=[("trajectory_id", "=", tid)], partitioning=None)
               .sort_values("step"))


def peer_connection() -> duckdb.DuckDBPyConnection:
    """The raw-DuckDB peer's connection: defaults, plus the Parquet metadata cache a competent user would turn on."""
    con = duckdb.connect(":memory:")
    con.execute("SET parquet_metadata_cache = true")
    con.execute("SET enable_progress_bar = false")
    return con


def bench_queries(store: CorpusStore, json_dir: Path | None, repeats: int = 5, seed: int = 0,
                  python_fts: bool = True) -> dict[str, Any]:
    """Explore, exact search and open-trajectory timings beside their peers, interleaved; answers checked first."""
    root = store.root
    if not isinstance(root, Path):  # the pandas and pure-Python baselines read local files
        raise ValueError(f"{root}: the query benchmark runs on a local corpus")
    con = peer_connection()
    ids = store.query("SELECT trajectory_id FROM trajectories USING SAMPLE 200 ROWS (reservoir, 1)"
                      ).column(0).to_pylist()
    rng = random.Random(seed)
    picks = iter(rng.choice(ids) for _ in range(100_000))
    n = int(store.scalar("SELECT count(*) FROM trajectories") or 0)

    explore: dict[str, Callable[[], Any]] = {
        "horizonlens": lambda: explore_store(store), "polars": lambda: explore_polars(root),
        "duckdb_raw": lambda: explore_duckdb(con, root), "pandas": lambda: explore_pandas(root)}
    if json_dir is not None:
        explore["json_files"] = lambda: explore_json(json_dir)
    search: dict[str, Callable[[], Any]] = {
        "horizonlens": lambda: fts_store(store, "exact"), "polars": lambda: search_polars(root),
        "duckdb_raw": lambda: search_duckdb(con, root)}
    if python_fts and n <= PANDAS_SEARCH_MAX:
        search["pandas"] = lambda: search_pandas(root)
    tid = ids[0]
    opening = {"horizonlens": (lambda: open_store_steps(store, next(picks)), lambda: open_store_steps(store, tid)),
               "polars": (lambda: open_polars(root, next(picks)), lambda: open_polars(root, tid)),
               "duckdb_raw": (lambda: open_duckdb(con, root, next(picks)), lambda: open_duckdb(con, root, tid)),
               "pandas": (lambda: open_pandas(root, next(picks)), lambda: open_pandas(root, tid))}
    answers = {"explore": {k: f() for k, f in explore.items()}, "search_exact": {k: f() for k, f in search.items()},
               "open_trajectory": {k: check() for k, (_, check) in opening.items()}}
    for query, got in answers.items():
        if len(set(got.values())) != 1:
            raise AssertionError(f"{query}: the variants disagree: {got}")
    out: dict[str, Any] = {"explore": interleaved(explore, repeats=repeats),
                           "search_exact": interleaved(search, repeats=max(3, repeats // 2)),
                           "open_trajectory": interleaved({k: f for k, (f, _) in opening.items()}, repeats=repeats),
                           "answers": {q: next(iter(a.values())) for q, a in answers.items()}}
    if store.has_word_index:
        out["search_words"] = interleaved({"horizonlens": lambda: fts_store(store, "words")}, repeats=repeats)
        out["answers"]["search_words"] = fts_store(store, "words")
    con.close()
    return out


def peers_row(n: int, timings: dict[str, dict[str, float]]) -> dict[str, Any]:
    """One row of the results file's `peers`: medians in milliseconds (None where a peer was not run)."""
    def ms(name: str) -> float | None:
        t = timings.get(name)
        return round(t["median_s"] * 1000, 2) if t else None

    return {"trajectories": n, "horizonlens_ms": ms("horizonlens"), "polars_ms": ms("polars"),
            "duckdb_raw_ms": ms("duckdb_raw"), "pandas_ms": ms("pandas")}
