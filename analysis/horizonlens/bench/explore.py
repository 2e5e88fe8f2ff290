"""The Explore query beside its two scan-based peers, run after run, with DuckDB's profile of each plan.

`explore_runs` repeats the comparison of bench/queries.py (the same query, the same peers, answers checked
equal first) several times in a row and keeps each run's medians and its best-peer ratio, so that a claim
about the ratio rests on consecutive runs rather than one. `explore_profile` runs DuckDB's EXPLAIN ANALYZE on
the store's two queries (the page, the count) and on the raw DuckDB peer's, and keeps each plan's operators with
their times and row counts: where the time goes on each side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from horizonlens.bench.queries import EXPLORE, PAGE, explore_duckdb, explore_polars, explore_store, peer_connection
from horizonlens.bench.timing import interleaved
from horizonlens.query.filters import where_sql
from horizonlens.query.store import CorpusStore
from horizonlens.storage.quoting import sql_string

PEERS = ("polars", "duckdb_raw")


def explore_runs(store: CorpusStore, runs: int = 3, repeats: int = 7) -> list[dict[str, Any]]:
    """`runs` consecutive comparisons of the Explore query: medians (ms) and the best peer's ratio to the store."""
    root = store.root
    assert isinstance(root, Path), "the Explore benchmark runs on a local corpus"
    con = peer_connection()
    variants: dict[str, Callable[[], Any]] = {"horizonlens": lambda: explore_store(store),
                                              "polars": lambda: explore_polars(root),
                                              "duckdb_raw": lambda: explore_duckdb(con, root)}
    answers = {k: f() for k, f in variants.items()}
    if len(set(answers.values())) != 1:
        raise AssertionError(f"explore: the variants disagree: {answers}")
    out = []
    for run in range(runs):
        t = interleaved(variants, repeats=repeats)
        ms = {k: round(v["median_s"] * 1000, 2) for k, v in t.items()}
        p95 = {k: round(v["p95_s"] * 1000, 2) for k, v in t.items()}
        best = min(ms[p] for p in PEERS)
        out.append({"run": run + 1, "median_ms": ms, "p95_ms": p95,
                    "best_peer_ratio": round(best / ms["horizonlens"], 2)})
    con.close()
    return out


def explore_profile(store: CorpusStore) -> dict[str, str]:
    """EXPLAIN ANALYZE of the store's page and count queries and of the raw DuckDB peer's, as DuckDB prints them."""
    clauses, params = store.filter_clauses(EXPLORE)
    where = where_sql(clauses)
    cols = "t.*"
    table = store.lists.table()
    plans: dict[str, str] = {}

    def explain(sql: str, args: list[Any]) -> str:
        rows = store.query(f"EXPLAIN ANALYZE {sql}", args)
        return "\n".join(str(v) for v in rows.column(rows.num_columns - 1).to_pylist())

    plans["store_page"] = explain(f"SELECT {cols} FROM {table} t{where} ORDER BY t.n_steps DESC NULLS LAST, "
                                  f"t.trajectory_id LIMIT {PAGE}", params)
    plans["store_count"] = explain(f"SELECT sum(t.trajectories) FROM agg_cube_trajectories t{where}", params)
    con = peer_connection()
    assert isinstance(store.root, Path)
    files = sql_string(str(store.root / "trajectories" / "**" / "*.parquet"))
    src = f"read_parquet({files}, hive_partitioning = false)"
    peer_where = "domain IN (?, ?) AND outcome = ? AND n_steps >= ?"
    peer_params = [*EXPLORE.domains, *EXPLORE.outcomes, EXPLORE.min_steps]
    for name, sql in (("duckdb_page", f"SELECT * FROM {src} WHERE {peer_where} ORDER BY n_steps DESC, trajectory_id "
                                      f"LIMIT {PAGE}"),
                      ("duckdb_count", f"SELECT count(*) FROM {src} WHERE {peer_where}")):
        rows = con.execute(f"EXPLAIN ANALYZE {sql}", peer_params).fetchall()
        plans[name] = "\n".join(str(r[-1]) for r in rows)
    con.close()
    return plans


def report_lines(results: dict[str, Any]) -> list[str]:
    """The Explore section of RESULTS.md: consecutive runs against the peers, per corpus size."""
    rows = [(n, c["explore_runs"]) for n, c in results.get("corpora", {}).items() if c.get("explore_runs")]
    if not rows:
        return []
    lines = ["", "## Explore beside its peers, run after run", "",
             "The Explore query of the peers table, compared again in consecutive runs (median ms of each run; "
             "ratio: the best peer's median ÷ Horizon Lens's). The plans DuckDB ran for each side are in the JSON "
             "(`explore_profile`).", "",
             "| trajectories | run | Horizon Lens | Polars lazy | DuckDB raw SQL | best peer ÷ HL |",
             "|---|---|---|---|---|---|"]
    for n, runs in rows:
        for r in runs:
            ms = r["median_ms"]
            lines.append(f"| {int(n):,} | {r['run']} | {ms['horizonlens']:,.1f} | {ms['polars']:,.1f} | "
                         f"{ms['duckdb_raw']:,.1f} | {r['best_peer_ratio']:.2f}× |")
    return lines
