"""The DuckDB store: a corpus directory opened read-only as views, and the queries over it.

Every query here is parameterized: user input only ever reaches DuckDB as a bound parameter,
and identifiers (sort columns) come from fixed allow-lists. The connection is hardened once the
views exist: file access is limited to the corpus directory and configuration is locked, so the
power-user SQL entry point (`horizonlens.corpus.sql`) can run on the same connection.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from horizonlens.corpus.filters import TrajectoryFilter, where_sql
from horizonlens.corpus.io import open_corpus_files, parquet_files
from horizonlens.corpus.layout import CHECKPOINT_FROM_PATH_SQL, replay_checkpoints, replays_dir
from horizonlens.corpus.quoting import quote_ident, sql_string
from horizonlens.corpus.schema import TRAJECTORIES
from horizonlens.corpus.search_index import INDEX_DIR, index_is_fresh
from horizonlens.corpus.text import like_pattern, step_text_match, tool_names_sql
from horizonlens.errors import CorpusError, StoreError

TRAJECTORY_COLUMNS = frozenset(TRAJECTORIES.names)
# Sortable columns of the trajectory list (identifiers are never taken from user input).
SORTABLE = ("trajectory_id", "task_id", "domain", "agent", "teacher", "outcome", "reward", "n_steps", "n_tokens",
            "n_failed_checks", "first_failed_step", "started_at", "duration_s", "cost_usd")
LIST_COLUMNS = ("trajectory_id", "task_id", "trial", "source", "domain", "agent", "teacher", "outcome", "reward",
                "n_steps", "n_tokens", "n_failed_checks", "first_failed_step", "started_at", "duration_s", "cost_usd")


@dataclass
class Page:
    """One page of the trajectory list, with the total count over all pages."""

    rows: pa.Table
    total: int
    offset: int
    limit: int


class CorpusStore:
    """A read-only DuckDB view of one corpus directory. Thread-safe: each call uses its own cursor."""

    def __init__(self, root: Path | str, memory_limit: str = "2GB", threads: int | None = None):
        self.root = Path(root).resolve()
        files = open_corpus_files(self.root)
        self.manifest = files.manifest
        self._opened_manifest = (self.root / "manifest.json").stat().st_mtime_ns
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="horizonlens-query")
        self.con = duckdb.connect(":memory:")
        self.con.execute(f"SET memory_limit = {sql_string(memory_limit)}")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        # keep Parquet footers in memory between queries: opening one trajectory then costs no footer reads
        self.con.execute("SET parquet_metadata_cache = true")
        # large scans (distinct tool names, window functions over all checks) need not keep row order; this
        # keeps them inside the memory limit on a 1M-trajectory corpus
        self.con.execute("SET preserve_insertion_order = false")
        self.partitions: dict[str, list[str]] = {}
        for name in files.files:
            self._create_view(name, self.root / name)
        self.replay_checkpoints = self._create_replay_views()
        self.has_word_index = False
        self.refresh_index()
        # Harden: only the corpus directory is readable from SQL from now on; nothing can change that.
        self.con.execute(f"SET allowed_directories = [{sql_string(str(self.root) + '/')}]")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")

    # ------------------------------------------------------------------------------------------
    def _create_view(self, name: str, directory: Path, view: str | None = None) -> None:
        glob = str(directory / "**" / "*.parquet")
        hive = any(p.is_dir() and "=" in p.name for p in directory.iterdir()) if directory.is_dir() else False
        # union_by_name makes DuckDB read every file's schema on every query (~3x slower on a 1M-trajectory
        # corpus); it is only needed when files differ in columns or column order.
        if hive:  # remember partition keys: lookups by trajectory can prune partitions
            self.partitions[view or name] = sorted({p.name.split("=", 1)[0] for p in directory.iterdir()
                                                    if p.is_dir() and "=" in p.name})
        schemas = {pq.read_schema(p).remove_metadata().to_string() for p in parquet_files(directory)}
        union = "true" if len(schemas) > 1 else "false"
        source = (f"read_parquet({sql_string(glob)}, hive_partitioning = {'true' if hive else 'false'}, "
                  f"union_by_name = {union})")
        self.con.execute(f"CREATE OR REPLACE VIEW {quote_ident(view or name)} AS SELECT * FROM {source}")

    def _create_replay_views(self) -> list[str]:
        """Views over every checkpoint's replay cache: replay_steps and routing, keyed by checkpoint_id."""
        base = replays_dir(self.root)
        found = [c for c in replay_checkpoints(self.root) if parquet_files(base / c / "steps")]
        if found:
            glob_steps = str(base / "*" / "steps" / "*.parquet")
            glob_routing = str(base / "*" / "routing" / "*.parquet")
            for view, glob in (("replay_steps", glob_steps), ("routing", glob_routing)):
                has_files = any(parquet_files(base / c / ("steps" if view == "replay_steps" else "routing")) for c in found)
                if not has_files:
                    continue
                self.con.execute(
                    f"CREATE OR REPLACE VIEW {quote_ident(view)} AS SELECT *, "
                    f"regexp_extract(filename, {sql_string(CHECKPOINT_FROM_PATH_SQL)}, 1) AS checkpoint_id FROM read_parquet({sql_string(glob)}, "
                    f"filename = true, union_by_name = true)")
        return found

    def filter_clauses(self, flt: TrajectoryFilter | None) -> tuple[list[str], list[Any]]:
        """A filter's SQL conditions over `trajectories t` for this corpus (word searches use the index
        when it is fresh), and their parameters.
        """
        return (flt or TrajectoryFilter()).clauses(self.has_word_index)


    @property
    def version(self) -> tuple[Any, ...]:
        """Changes whenever what the views show changes: the key for caching query results."""
        return (self._opened_manifest, tuple(self.replay_checkpoints), self.has_word_index)

    def refresh_index(self) -> bool:
        """Use the word index if it is up to date with the corpus files (re-checked on each call)."""
        with self._lock:
            fresh = index_is_fresh(self.root)
            if fresh:
                self._create_view("search_words", self.root / INDEX_DIR / "words")
            self.has_word_index = fresh
        return fresh

    def refresh_replays(self) -> list[str]:
        """Pick up replay caches written since the store was opened."""
        with self._lock:
            self.replay_checkpoints = self._create_replay_views()
        return self.replay_checkpoints

    def cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            return self.con.cursor()

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """Run one of this module's parameterized queries; errors become StoreError."""
        cur = self.cursor()
        try:
            return cur.sql(sql, params=params or None).to_arrow_table()
        except duckdb.Error as exc:
            raise StoreError(f"query failed: {exc}") from exc
        finally:
            cur.close()

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        table = self.query(sql, params)
        return table.column(0)[0].as_py() if table.num_rows else None

    # --- queries -------------------------------------------------------------------------------
    def list_trajectories(self, flt: TrajectoryFilter | None = None, sort: str = "started_at", descending: bool = False,
                          offset: int = 0, limit: int = 50) -> Page:
        """One page of trajectories matching the filter, sorted, plus the total count."""
        if sort not in SORTABLE:
            raise StoreError(f"cannot sort by {sort!r}; choose one of {', '.join(SORTABLE)}")
        clauses, params = self.filter_clauses(flt)
        where = where_sql(clauses)
        limit = max(1, min(int(limit), 1000))
        offset = max(0, int(offset))
        cols = ", ".join(f"t.{c}" for c in LIST_COLUMNS)
        order = f"t.{quote_ident(sort)} {'DESC' if descending else 'ASC'} NULLS LAST, t.trajectory_id"
        if flt is not None and flt.text:
            # a text filter scans step content: count in the same pass instead of scanning twice
            rows = self.query(f"SELECT {cols}, count(*) OVER () AS _total FROM trajectories t{where} "
                              f"ORDER BY {order} LIMIT ? OFFSET ?", [*params, limit, offset])
            if rows.num_rows:
                total = rows["_total"][0].as_py()
                return Page(rows=rows.drop_columns(["_total"]), total=int(total), offset=offset, limit=limit)
        # the page and the total are independent: run them side by side (each on its own cursor); on a
        # 1M-trajectory corpus this takes the Explore query from ~33 to ~24 ms
        page = self._pool.submit(self.query, f"SELECT {cols} FROM trajectories t{where} ORDER BY {order} "
                                             f"LIMIT ? OFFSET ?", [*params, limit, offset])
        total = self.scalar(f"SELECT count(*) FROM trajectories t{where}", params)
        return Page(rows=page.result(), total=int(total or 0), offset=offset, limit=limit)

    def trajectory(self, trajectory_id: str) -> dict[str, Any] | None:
        table = self.query("SELECT * FROM trajectories WHERE trajectory_id = ?", [trajectory_id])
        return table.to_pylist()[0] if table.num_rows else None

    def steps(self, trajectory_id: str, start: int = 0, stop: int | None = None) -> pa.Table:
        """The steps of one trajectory in order; [start, stop) windows a long one."""
        sql = "SELECT * FROM steps WHERE trajectory_id = ? AND step >= ?"
        params: list[Any] = [trajectory_id, int(start)]
        keys = [k for k in self.partitions.get("steps", []) if k in TRAJECTORY_COLUMNS]
        if keys:  # steps partitioned by e.g. domain: look the trajectory's value up and read one partition
            row = self.query(f"SELECT {', '.join(quote_ident(k) for k in keys)} FROM trajectories "
                             f"WHERE trajectory_id = ?", [trajectory_id]).to_pylist()
            for k in keys if row else []:
                sql += f" AND CAST({quote_ident(k)} AS VARCHAR) = ?"
                params.append(str(row[0][k]))
        if stop is not None:
            sql += " AND step < ?"
            params.append(int(stop))
        return self.query(sql + " ORDER BY step", params)

    def check_strip(self, trajectory_id: str) -> pa.Table:
        """Per step: source, check outcome, error label, decisive flag — the error timeline's data."""
        return self.query(f"SELECT s.step, s.source, s.check_passed, s.error_label, s.is_decisive_error, "
                          f"{tool_names_sql('s')} AS tools FROM steps s WHERE s.trajectory_id = ? ORDER BY s.step",
                          [trajectory_id])

    def find_in_trajectory(self, trajectory_id: str, text: str) -> list[int]:
        """Steps of one trajectory whose content contains `text` (case-insensitive, literal)."""
        match, n = step_text_match("s")
        table = self.query(f"SELECT s.step FROM steps s WHERE s.trajectory_id = ? AND {match} ORDER BY s.step",
                           [trajectory_id, *([like_pattern(text)] * n)])
        return table.column("step").to_pylist()

    def summary(self) -> dict[str, Any]:
        """Corpus totals: trajectories, steps, tokens, outcome and failed-check rates."""
        row = self.query(
            "SELECT count(*) AS trajectories, sum(n_steps)::BIGINT AS steps, sum(n_tokens)::BIGINT AS tokens, "
            "max(n_tokens) AS max_tokens, max(n_steps) AS max_steps, "
            "avg(CASE WHEN outcome = 'success' THEN 1.0 WHEN outcome = 'failure' THEN 0.0 END) AS success_rate, "
            "avg(CASE WHEN n_failed_checks > 0 THEN 1.0 ELSE 0.0 END) AS share_with_failed_checks, "
            "count(DISTINCT task_id) AS tasks FROM trajectories").to_pylist()[0]
        return row

    def by_group(self, column: str = "domain") -> pa.Table:
        """Outcome and failed-check rates per domain/agent/teacher/source."""
        if column not in ("domain", "agent", "teacher", "source", "outcome"):
            raise StoreError(f"cannot group by {column!r}")
        col = quote_ident(column)
        return self.query(
            f"WITH s AS (SELECT trajectory_id, count(check_passed) AS checks, "
            f"count(*) FILTER (WHERE check_passed = false) AS failed FROM steps GROUP BY trajectory_id) "
            f"SELECT t.{col} AS {col}, count(*) AS trajectories, "
            f"avg(CASE WHEN outcome = 'success' THEN 1.0 WHEN outcome = 'failure' THEN 0.0 END) AS success_rate, "
            f"sum(s.failed) / nullif(sum(s.checks), 0) AS failed_check_rate, median(t.n_steps) AS median_steps, "
            f"sum(t.n_tokens)::BIGINT AS tokens FROM trajectories t LEFT JOIN s USING (trajectory_id) "
            f"GROUP BY t.{col} ORDER BY t.{col}")

    def horizon_lengths(self) -> pa.Table:
        return self.query("SELECT trajectory_id, domain, outcome, n_steps, n_tokens FROM trajectories")

    def distinct(self, column: str) -> list[str]:
        if column not in ("domain", "agent", "teacher", "source", "outcome"):
            raise StoreError(f"cannot list values of {column!r}")
        table = self.query(f"SELECT DISTINCT {quote_ident(column)} AS v FROM trajectories WHERE v IS NOT NULL ORDER BY v")
        return table.column("v").to_pylist()

    def tools(self) -> list[str]:
        table = self.query(f"SELECT DISTINCT unnest({tool_names_sql('s')}) AS name FROM steps s ORDER BY name NULLS LAST")
        return [n for n in table.column("name").to_pylist() if n is not None]

    def trials_of(self, task_id: str) -> list[str]:
        table = self.query("SELECT trajectory_id FROM trajectories WHERE task_id = ? ORDER BY trial, trajectory_id",
                           [task_id])
        return table.column("trajectory_id").to_pylist()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.con.close()


def open_store(root: Path | str) -> CorpusStore:
    """Open a corpus for querying; CorpusError says what is wrong with the directory."""
    try:
        return CorpusStore(root)
    except duckdb.Error as exc:
        raise CorpusError(f"{root}: DuckDB could not open the corpus ({exc})") from exc
