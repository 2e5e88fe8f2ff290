"""The read-only SQL entry point refuses anything that could write, attach or read outside."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from horizonlens.query.console import (
    EXAMPLES,
    MAX_CELL_CHARS,
    MAX_LIST_ITEMS,
    MAX_NESTING,
    MAX_SQL_TOKENS,
    SqlError,
    run_sql,
)
from horizonlens.query.store import open_store


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
    "SELECT * FROM query('COPY (SELECT 1) TO ''{root}/leak.csv''')",
    "SELECT * FROM query('ATTACH ''/tmp/x.duckdb'' AS x')",
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


# --- bounds before parsing --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sql, message", [
    ("SELECT " + "(" * 2_000_000 + "1" + ")" * 2_000_000, "characters long"),  # the 4 MB query of the issue
    ("SELECT " + "(" * 5_000 + "1", "nest more than"),  # unclosed: the parser's cost grows with depth squared
    ("SELECT " + "[" * 65 + "1" + "]" * 65, "nest more than"),
    ("SELECT " + "- " * 3_000 + "1", "operators in a row"),  # stacks the parser like parentheses do
    ("SELECT " + ",".join(["1"] * 30_000), "tokens"),
    ("SELECT 1\x00", "NUL"),
    ("SELECT '\udcff'", "not valid text"),  # a command-line argument that was not UTF-8
    ("-- only a comment", "no statement"),
])
def test_bounds_before_parsing(store, sql: str, message: str) -> None:
    with pytest.raises(SqlError, match=message):
        run_sql(store, sql)


def test_nesting_within_bounds_runs(store) -> None:
    deep = "SELECT " + "(" * 60 + "1" + ")" * 60 + " AS one, " + "- " * 60 + "1 AS minus"
    assert run_sql(store, deep).table.to_pylist() == [{"one": 1, "minus": 1}]
    with pytest.raises(SqlError, match="parse"):  # unclosed but shallow: a plain syntax error
        run_sql(store, "SELECT " + "(" * 60 + "1")


def test_brackets_inside_strings_and_comments_do_not_count(store) -> None:
    sql = "SELECT '" + "(" * 200 + "' AS s /* " + "[" * 200 + " */ -- " + "{" * 200
    assert run_sql(store, sql).table["s"][0].as_py() == "(" * 200


def test_trailing_semicolons_and_comments(store) -> None:
    assert run_sql(store, "SELECT 1 AS x;; -- bye").table.to_pylist() == [{"x": 1}]
    assert run_sql(store, "SELECT 2 AS x -- no semicolon").table.to_pylist() == [{"x": 2}]


# --- bounded results ----------------------------------------------------------------------------------------------
def test_huge_text_cells_are_cut_inside_duckdb(store) -> None:
    """30 strings of 100 MB (the issue's crash) arrive as 30 cells of MAX_CELL_CHARS characters."""
    result = run_sql(store, "SELECT repeat('x', 100000000) AS s, 7 AS n FROM range(30)")
    assert result.table.num_rows == 30 and result.cut_cells == 30
    assert {len(s) for s in result.table["s"].to_pylist()} == {MAX_CELL_CHARS}
    assert result.table["n"].to_pylist() == [7] * 30
    assert any("cut to fit" in n for n in result.notes)


def test_nested_cells_are_cut_or_left_empty(store) -> None:
    sql = ("SELECT [repeat('x', 20000), 'short'] AS l, {'a': repeat('y', 20000), 'b': 3} AS s, range(5000) AS r, "
           "list_transform(range(1000), lambda i: repeat('z', 5000)) AS big, [1, 2] AS small")
    result = run_sql(store, sql)
    row = result.table.to_pylist()[0]
    assert [len(v) for v in row["l"]] == [MAX_CELL_CHARS, 5]
    assert len(row["s"]["a"]) == MAX_CELL_CHARS and row["s"]["b"] == 3
    assert row["r"] == list(range(MAX_LIST_ITEMS))
    assert row["big"] is None  # 5 MB as text after cutting: too large to show
    assert row["small"] == [1, 2]
    assert result.cut_cells == 4


def test_byte_budget_stops_rows(store) -> None:
    result = run_sql(store, "SELECT repeat('x', 9000) AS s FROM range(20000)", row_cap=20_000, byte_cap=8 * 2**20)
    assert result.stopped_at_bytes and result.truncated
    assert 0 < result.table.num_rows < 20_000
    assert result.table.nbytes <= 8 * 2**20
    assert any("budget" in n for n in result.notes)


def test_row_cap_exact_and_order_kept(store) -> None:
    assert run_sql(store, "SELECT * FROM range(10)", row_cap=7).truncated
    assert not run_sql(store, "SELECT * FROM range(10)", row_cap=10).truncated
    values = run_sql(store, "SELECT range AS v FROM range(100000) ORDER BY v DESC", row_cap=100_000).table["v"]
    assert values.to_pylist() == list(range(99_999, -1, -1))


def test_duplicate_column_names_kept(store) -> None:
    table = run_sql(store, "SELECT 1 AS a, 'x' AS a, [1] AS \"we\"\"ird\"").table
    assert table.column_names == ["a", "a", 'we"ird']


def test_caller_is_answered_at_the_deadline(store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even if the engine ignored the interrupt, the caller gets its SqlError at the deadline (plus grace)."""
    from horizonlens.query import console as sql_module

    release = threading.Event()

    def stuck(*args: object, **kwargs: object) -> None:
        release.wait(30)

    monkeypatch.setattr(sql_module, "_run", stuck)
    started = time.perf_counter()
    try:
        with pytest.raises(SqlError, match="longer than"):
            run_sql(store, "SELECT 1", timeout_s=0.2)
        assert time.perf_counter() - started < 0.2 + sql_module._GRACE_S + 5
    finally:
        release.set()


# --- SQL reads only the corpus --------------------------------------------------------------------------------------
def test_temp_directory_is_private(tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB may always read its temp directory (`<cwd>/.tmp/` by default): a file planted there stays unread."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tmp").mkdir()
    planted = tmp_path / ".tmp" / "planted.csv"
    planted.write_text("secret,1\n")
    # the hazard is real: DuckDB's default allows it even with external access off
    plain = duckdb.connect(":memory:")
    plain.execute(f"SET allowed_directories = ['{tiny_corpus}/']")
    plain.execute("SET enable_external_access = false")
    assert plain.sql("SELECT * FROM read_csv('.tmp/planted.csv', header = false)").fetchall() == [("secret", 1)]
    plain.close()
    store = open_store(tiny_corpus)
    try:
        assert stat.S_IMODE(store.spill_dir.stat().st_mode) == 0o700
        for path in (".tmp/planted.csv", str(planted)):
            for fn in ("read_csv", "read_text", "read_blob"):
                with pytest.raises(SqlError, match="not allowed|Permission"):
                    run_sql(store, f"SELECT * FROM {fn}('{path}')")
    finally:
        store.close()
    assert not store.spill_dir.exists()


# --- property-based: whatever the text, one SELECT or a SqlError, and nothing changes -----------------------------
FRAGMENTS = [
    "SELECT", "FROM", "steps", "trajectories", "WHERE", "1", "'x'", "*", ",", "(", ")", "[", "]", "{", "}", ";", "--",
    "/*", "*/", "'", '"', "$$", "COPY", "TO", "'/tmp/hl-leak.csv'", "ATTACH", "DETACH", "INSTALL", "LOAD", "httpfs",
    "SET", "RESET", "PRAGMA", "CALL", "CREATE", "TABLE", "VIEW", "MACRO", "SECRET", "DROP", "INSERT", "INTO", "UPDATE",
    "DELETE", "EXPORT", "IMPORT", "DATABASE", "CHECKPOINT", "VACUUM", "BEGIN", "COMMIT", "USE", "AS", "x", "=",
    "enable_external_access", "allowed_directories", "lock_configuration", "true", "false", "read_csv", "read_text",
    "read_blob", "glob", "query", "'/etc/passwd'", "'.tmp/x'", "WITH", "UNION", "ALL", "VALUES", "DESCRIBE",
    "SUMMARIZE", "SHOW", "PIVOT", "ON", "USING", "count", "lambda", ":", "->", "-", "NOT", "::", "VARCHAR",
]
sql_like = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=30).map(" ".join)


def _state(store) -> tuple:
    cur = store.cursor()
    try:
        catalog = cur.sql("SELECT database_name, schema_name, view_name FROM duckdb_views() WHERE NOT internal "
                          "UNION ALL SELECT database_name, schema_name, table_name FROM duckdb_tables() "
                          "ORDER BY ALL").fetchall()
        settings = cur.sql("SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
                           "'allowed_directories', 'lock_configuration', 'temp_directory', 'memory_limit') "
                           "ORDER BY name").fetchall()
        databases = cur.sql("SELECT database_name FROM duckdb_databases() ORDER BY 1").fetchall()
    finally:
        cur.close()
    files = sorted(str(p) for p in store.root.rglob("*"))
    return catalog, settings, databases, files


@settings(max_examples=250, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(sql=st.one_of(st.text(max_size=200), sql_like))
def test_any_text_is_one_select_or_a_sql_error(store, sql: str) -> None:
    before = _state(store)
    try:
        run_sql(store, sql, row_cap=50, timeout_s=2)
    except SqlError:
        pass
    else:  # it ran: an independent parser agrees it was exactly one SELECT
        statements = duckdb.connect(":memory:").extract_statements(sql)
        assert len(statements) == 1 and statements[0].type == duckdb.StatementType.SELECT
    assert _state(store) == before
    assert not Path("/tmp/hl-leak.csv").exists()


BRACKETS_OR_OPERATORS = ("(", "[", "- ", "(SELECT ", "+")  # each one counts towards a gate bound
GATE = ("brackets nest more than", "operators in a row", "tokens; the limit is", "characters long; the limit is")
DEADLINE = "ran longer than"  # how a query stopped at its deadline is told


@settings(max_examples=60, deadline=None, database=None)
@given(opener=st.sampled_from([*BRACKETS_OR_OPERATORS, "NOT "]), n=st.integers(1, 20_000))
def test_deep_text_is_refused_or_answered_quickly(store, opener: str, n: int) -> None:
    """Deep nesting within the bounds parses in milliseconds; beyond them it never reaches the parser.

    Past a bound the refusal is the gate's (it names the bound); within the bounds DuckDB answers (here with a
    parse error) before the deadline, so no text is ever stopped by the deadline instead.
    """
    sql = "SELECT " + opener * n
    try:  # a generous deadline: what it must catch takes minutes (or the machine's memory), not a loaded second
        run_sql(store, sql, timeout_s=30)
        message = ""
    except SqlError as exc:
        message = str(exc)
    assert DEADLINE not in message, f"{opener!r} x {n}: stopped at the deadline, not refused or answered"
    beyond = n > MAX_NESTING if opener in BRACKETS_OR_OPERATORS else n + 1 > MAX_SQL_TOKENS
    assert beyond == any(g in message for g in GATE), f"{opener!r} x {n}: {message}"
    if not beyond:
        assert message.startswith("could not parse the SQL"), message
