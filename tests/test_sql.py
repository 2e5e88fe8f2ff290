"""The read-only SQL entry point refuses anything that could write, attach or read outside."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from horizonlens.corpus.sql import EXAMPLES, SqlError, run_sql
from horizonlens.corpus.store import open_store


@pytest.fixture(scope="module")
def store(tiny_corpus: Path):
    return open_store(tiny_corpus)


@pytest.mark.parametrize("sql", [
    "COPY steps TO '{root}/leak.csv'",
    "COPY (SELECT 1) TO '/tmp/leak.csv'",
    "ATTACH '/tmp/x.duckdb' AS x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "PRAGMA enable_profiling",
    "CREATE TABLE x AS SELECT 1",
    "INSERT INTO steps SELECT * FROM steps",
    "DROP VIEW steps",
    "EXPORT DATABASE '{root}/dump'",
    "SELECT 1; DROP VIEW steps",
])
def test_refuses_non_select(store, sql: str) -> None:
    with pytest.raises(SqlError):
        run_sql(store, sql.format(root=store.root))
    assert not (store.root / "leak.csv").exists()
    assert run_sql(store, "SELECT count(*) AS n FROM steps").table["n"][0].as_py() > 0


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_parquet('/tmp/../etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
])
def test_refuses_reads_outside_corpus(store, sql: str) -> None:
    with pytest.raises(SqlError, match="not allowed|Permission|disabled"):
        run_sql(store, sql)


def test_can_read_inside_corpus(store) -> None:
    sql = f"SELECT count(*) AS n FROM read_parquet('{store.root}/steps/*.parquet')"
    assert run_sql(store, sql).table["n"][0].as_py() == store.scalar("SELECT count(*) FROM steps")


def test_row_cap(store) -> None:
    result = run_sql(store, "SELECT * FROM steps", row_cap=7)
    assert result.table.num_rows == 7 and result.truncated
    small = run_sql(store, "SELECT * FROM trajectories LIMIT 3", row_cap=7)
    assert small.table.num_rows == 3 and not small.truncated


def test_time_limit(store) -> None:
    started = time.perf_counter()
    with pytest.raises(SqlError, match="longer than"):
        run_sql(store, "SELECT sum(a.range * b.range) FROM range(200000) a, range(200000) b", timeout_s=0.5)
    assert time.perf_counter() - started < 20


def test_examples_run(store) -> None:
    for name, sql in EXAMPLES.items():
        assert run_sql(store, sql).table.num_rows > 0, name


def test_errors_are_clear(store) -> None:
    with pytest.raises(SqlError, match="empty"):
        run_sql(store, "  ")
    with pytest.raises(SqlError, match="no_such_table|does not exist"):
        run_sql(store, "SELECT * FROM no_such_table")
