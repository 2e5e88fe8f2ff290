"""The power-user SQL entry point: one read-only SELECT over the corpus views, bounded in size and time.

Four layers keep a query typed by a user harmless (docs/security.md, "SQL reads only the corpus and is bounded"):
the text is bounded before DuckDB's parser sees it (the parser's cost on a syntax error grows with the square of
its stack, outside any timer or memory limit), it must parse as exactly one SELECT, it runs on the store's locked
connection, and one deadline and caps on rows, bytes and cells bound what it returns.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from horizonlens.errors import SqlError
from horizonlens.query.store import CorpusStore
from horizonlens.storage.access import Permission, require
from horizonlens.storage.location import redact
from horizonlens.storage.quoting import quote_ident

DEFAULT_ROW_CAP = 10_000
DEFAULT_TIMEOUT_S = 10.0
MAX_SQL_CHARS = 100_000  # a long hand-written query is a few thousand characters
MAX_SQL_TOKENS = 20_000  # bounds the parser's work; an IN list of ~10,000 values still fits
MAX_NESTING = 64  # brackets ( [ { open at once
MAX_OPERATOR_RUN = 64  # operator tokens in a row
MAX_CELL_CHARS = 10_000  # text cells (also strings inside lists and structs) are cut here
MAX_LIST_ITEMS = 1_000  # lists are shortened to this many items
MAX_NESTED_CHARS = 100_000  # a nested cell larger than this (as text) after cutting is left empty
DEFAULT_RESULT_BYTES = 64 * 2**20  # Arrow bytes of one result handed to the caller
_GRACE_S = 2.0  # after an interrupt, how long the caller waits for the worker to wind down
_OPENERS, _CLOSERS = frozenset("([{"), frozenset(")]}")
# types whose values have a small fixed size: never cut
_FIXED = frozenset({
    "boolean", "tinyint", "smallint", "integer", "bigint", "hugeint", "utinyint", "usmallint", "uinteger",
    "ubigint", "uhugeint", "float", "double", "decimal", "date", "time", "time_ns", "timestamp", "timestamp_s",
    "timestamp_ms", "timestamp_ns", "timestamp with time zone", "time with time zone", "interval", "uuid", "enum",
    "null"})

EXAMPLES: dict[str, str] = {
    "Failure rate by domain": (
        "SELECT domain, count(*) AS trajectories,\n"
        "       avg((outcome = 'failure')::INT) AS failure_rate\n"
        "FROM trajectories GROUP BY domain ORDER BY failure_rate DESC, domain"),
    "Most common error labels": (
        "SELECT error_label, count(*) AS n FROM steps\n"
        "WHERE check_passed = false GROUP BY error_label ORDER BY n DESC, error_label"),
    "Tool usage and failure rate": (
        "SELECT c.name AS tool, count(*) AS calls,\n"
        "       avg((check_passed = false)::INT) AS failed_share\n"
        "FROM steps, unnest(tool_calls) AS u(c) GROUP BY tool ORDER BY calls DESC, tool"),
    "Longest trajectories": (
        "SELECT trajectory_id, domain, agent, n_steps, n_tokens, outcome\n"
        "FROM trajectories ORDER BY n_tokens DESC, trajectory_id LIMIT 20"),
}


@dataclass
class SqlResult:
    """The rows of one user query: at most `row_cap` rows and about `byte_cap` bytes, long cells cut."""

    table: pa.Table
    truncated: bool  # more rows existed than were returned (the row cap or the byte budget stopped them)
    row_cap: int
    byte_cap: int = DEFAULT_RESULT_BYTES
    stopped_at_bytes: bool = False  # the byte budget, not the row cap, stopped the rows
    cut_cells: int = 0  # cells cut (long text, long lists) or left empty (nested values too large to show)
    cell_chars: int = MAX_CELL_CHARS  # where text cells were cut for this result

    @property
    def notes(self) -> list[str]:
        """What the user should know about what is not shown, one sentence each."""
        out = []
        if self.stopped_at_bytes:
            out.append(f"Stopped after {self.table.num_rows:,} rows at the result budget of "
                       f"{self.byte_cap / 2**20:,.0f} MB; add a LIMIT or select fewer columns.")
        elif self.truncated:
            out.append(f"Stopped at the cap of {self.row_cap:,} rows.")
        if self.cut_cells:
            cells = "1 cell was" if self.cut_cells == 1 else f"{self.cut_cells:,} cells were"
            out.append(f"{cells} cut to fit: text after {self.cell_chars:,} characters, "
                       f"lists after {MAX_LIST_ITEMS:,} items; nested values over {MAX_NESTED_CHARS:,} characters "
                       "are left empty. Select a substring to see more.")
        return out


@dataclass
class _Lexed:
    """What the bounds check learned about the text: where each token starts and what it is."""

    starts: list[int] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


def check_limits(sql: str) -> _Lexed:
    """Refuse text too long, too many tokens, or nested too deep, before the parser sees it."""
    if not sql or not sql.strip():
        raise SqlError("the query is empty")
    if len(sql) > MAX_SQL_CHARS:
        raise SqlError(f"the query is {len(sql):,} characters long; the limit is {MAX_SQL_CHARS:,}")
    if "\x00" in sql:
        raise SqlError("the query contains a NUL character")
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SqlError(f"the query is not valid text ({exc.reason} at character {exc.start})") from exc
    tokens = duckdb.tokenize(sql)  # DuckDB's own lexer: linear in the text, no parser stack
    if len(tokens) > MAX_SQL_TOKENS:
        raise SqlError(f"the query has {len(tokens):,} tokens; the limit is {MAX_SQL_TOKENS:,}")
    lexed = _Lexed()
    depth = run = 0
    for i, (start, kind) in enumerate(tokens):
        end = tokens[i + 1][0] if i + 1 < len(tokens) else len(sql)
        text = sql[start:end].strip()
        lexed.starts.append(start)
        lexed.kinds.append(kind.name)
        lexed.texts.append(text)
        if kind.name != "operator":
            run = 0
            continue
        run += 1
        if text in _OPENERS:
            depth += 1
        elif text in _CLOSERS:
            depth = max(0, depth - 1)
        if depth > MAX_NESTING:
            raise SqlError(f"brackets nest more than {MAX_NESTING} deep (at character {start}); "
                           "flatten the query (e.g. with WITH)")
        if run > MAX_OPERATOR_RUN:
            raise SqlError(f"more than {MAX_OPERATOR_RUN} operators in a row (at character {start})")
    return lexed


def statement_body(sql: str, lexed: _Lexed) -> str:
    """The statement without trailing semicolons and comments, ready to be wrapped as a subquery."""
    end = len(lexed.kinds)
    while end and (lexed.kinds[end - 1] == "comment" or lexed.texts[end - 1] == ";"):
        end -= 1
    if end == 0:
        raise SqlError("the query has no statement")
    last = end - 1
    stop = lexed.starts[last + 1] if last + 1 < len(lexed.starts) else len(sql)
    return sql[:stop].rstrip().rstrip(";").rstrip()


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but exactly one SELECT statement (call after `check_limits`)."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlError(redact(f"could not parse the SQL: {exc}")) from exc
    if len(statements) != 1:
        raise SqlError(f"expected exactly one statement, got {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise SqlError(f"only SELECT queries are allowed here (this is a {kind.name} statement)")


# --- bounded results ------------------------------------------------------------------------------
def _children(ty: Any) -> list[tuple[str, Any]]:
    try:
        return list(ty.children)
    except (duckdb.Error, TypeError, AttributeError):
        return []


def _cut(expr: str, ty: Any, chars: int, depth: int = 0) -> tuple[str, str] | None:
    """SQL that shortens a value of type `ty` (strings, lists, structs inside) and SQL that says it did.

    None if the type holds nothing to cut. The flag reads the value's structure (lengths), which costs
    far less than comparing the cut value with the original.
    """
    kind = ty.id
    if kind == "varchar":
        return f"left({expr}, {chars})", f"length({expr}) > {chars}"
    if kind == "list":
        var = f"_x{depth}"
        inner = _cut(var, _children(ty)[0][1], chars, depth + 1)
        sliced, too_long = f"({expr})[1:{MAX_LIST_ITEMS}]", f"len({expr}) > {MAX_LIST_ITEMS}"
        if inner is None:
            return sliced, too_long
        return (f"list_transform({sliced}, lambda {var}: {inner[0]})",
                f"{too_long} OR list_bool_or(list_transform({sliced}, lambda {var}: {inner[1]}))")
    if kind == "struct":
        parts = {name: (f"({expr}).{quote_ident(name)}", _cut(f"({expr}).{quote_ident(name)}", fty, chars, depth + 1))
                 for name, fty in _children(ty)}
        cuts = [c for _, c in parts.values() if c is not None]
        if not cuts:
            return None
        packed = ", ".join(f"{quote_ident(name)} := {c[0] if c else field}" for name, (field, c) in parts.items())
        return (f"CASE WHEN {expr} IS NULL THEN NULL ELSE struct_pack({packed}) END",
                " OR ".join(f"coalesce({c[1]}, false)" for c in cuts))
    return None


def _bounded_column(i: int, ty: Any, chars: int) -> tuple[str, str | None, int]:
    """(select item, flag saying the cell was cut or None, the most Arrow bytes one cell can take)."""
    col = f"#{i + 1}"
    kind = ty.id
    if kind in _FIXED:
        return col, None, 32
    if kind == "varchar":
        return f"left({col}, {chars})", f"length({col}) > {chars}", 4 * chars + 8
    # everything else (lists, structs, maps, blobs, bit strings, big numbers…): cut what can be cut, then
    # leave the cell empty if its text is still too large; the text length bounds its Arrow size
    cut, flag = _cut(col, ty, chars) or (col, "false")
    too_big = f"strlen(CAST({cut} AS VARCHAR)) > {MAX_NESTED_CHARS}"
    return (f"CASE WHEN {too_big} THEN NULL ELSE {cut} END", f"coalesce({flag}, false) OR coalesce({too_big}, false)",
            2 * MAX_NESTED_CHARS)


def _bounded_select(body: str, types: list[Any], byte_cap: int) -> tuple[str, int, int]:
    """The user's SELECT wrapped so every cell is bounded; (SQL, rows per batch, where text is cut)."""
    batch_bytes = byte_cap // 4
    chars = MAX_CELL_CHARS
    n_text = sum(1 for t in types if t.id not in _FIXED)
    if n_text and n_text * (4 * chars + 8) > batch_bytes:  # very wide rows: cut text shorter
        chars = max(64, batch_bytes // (4 * n_text))
    items, flags, row_bytes = [], [], 0
    for i, ty in enumerate(types):
        item, flag, size = _bounded_column(i, ty, chars)
        items.append(f"{item} AS c{i}")
        row_bytes += size
        if flag:
            flags.append(f"coalesce({flag}, false)::INTEGER")
    if flags:
        items.append(f"list_sum([{', '.join(flags)}]) AS _cut")
    batch_rows = max(1, min(2048, batch_bytes // max(1, row_bytes)))
    return f"SELECT {', '.join(items)} FROM (\n{body}\n) AS q", batch_rows, chars


# --- running ----------------------------------------------------------------------------------------
def run_sql(store: CorpusStore, sql: str, row_cap: int = DEFAULT_ROW_CAP, timeout_s: float = DEFAULT_TIMEOUT_S,
            byte_cap: int = DEFAULT_RESULT_BYTES) -> SqlResult:
    """Run one read-only SELECT: at most `row_cap` rows and about `byte_cap` bytes, answered within `timeout_s`.

    The time limit covers the whole request, parsing included. SqlError says what was refused or failed;
    AccessDenied if the principal acting may not run SQL.
    """
    require(Permission.SQL)
    deadline = time.monotonic() + timeout_s
    lexed = check_limits(sql)
    body = statement_body(sql, lexed)
    cur = store.cursor()
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            outcome["result"] = _run(cur, sql, body, row_cap, byte_cap, deadline)
        except BaseException as exc:  # handed to the caller, who turns it into SqlError
            outcome["error"] = exc
        finally:
            cur.close()
            done.set()

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), cur.interrupt)
    timer.daemon = True
    timer.start()
    threading.Thread(target=work, name="horizonlens-sql", daemon=True).start()
    try:
        finished = done.wait(max(0.0, deadline - time.monotonic()) + _GRACE_S)
    finally:
        timer.cancel()
    if not finished:
        try:
            cur.interrupt()  # the worker stops at DuckDB's next check and closes its cursor
        except duckdb.Error:
            pass  # it closed just now
        raise SqlError(f"the query ran longer than {timeout_s:g} s and was stopped")
    error = outcome.get("error")
    if isinstance(error, (SqlError, duckdb.Error, pa.ArrowException, MemoryError)):
        raise _as_sql_error(error, timeout_s) from error
    if error is not None:
        raise error  # a bug, not a user error: let it surface
    result: SqlResult = outcome["result"]
    return result


def _run(cur: duckdb.DuckDBPyConnection, sql: str, body: str, row_cap: int, byte_cap: int,
         deadline: float) -> SqlResult:
    check_read_only(cur, sql)
    rel = cur.sql(body)  # binds the query (names and types) without running it
    names, types = list(rel.columns), list(rel.types)
    wrapped, batch_rows, chars = _bounded_select(body, types, byte_cap)
    check_read_only(cur, wrapped)  # the wrapper is still exactly one SELECT
    reader = cur.sql(wrapped).to_arrow_reader(batch_rows)
    batches: list[pa.RecordBatch] = []
    rows = size = 0
    more = stopped_at_bytes = False
    for batch in reader:
        if time.monotonic() > deadline:
            raise duckdb.InterruptException("deadline")
        if rows >= row_cap:
            more = True
            break
        if batches and size + batch.nbytes > byte_cap:
            more = stopped_at_bytes = True
            break
        if batch.num_rows > row_cap - rows:
            batch, more = batch.slice(0, row_cap - rows), True
        batches.append(batch)
        rows += batch.num_rows
        size += batch.nbytes
    table = pa.Table.from_batches(batches, schema=reader.schema) if batches else reader.schema.empty_table()
    cut = 0
    if "_cut" in table.column_names:
        cut = int(pc.sum(table["_cut"]).as_py() or 0)
        table = table.drop_columns(["_cut"])
    table = table.rename_columns(names)  # the user's own column names, duplicates included
    return SqlResult(table=table, truncated=more, row_cap=row_cap, byte_cap=byte_cap,
                     stopped_at_bytes=stopped_at_bytes, cut_cells=cut, cell_chars=chars)


def _as_sql_error(exc: BaseException, timeout_s: float) -> SqlError:
    """The user's view of a refused or failed query."""
    if isinstance(exc, SqlError):
        return exc
    if isinstance(exc, duckdb.InterruptException):
        return SqlError(f"the query ran longer than {timeout_s:g} s and was stopped")
    if isinstance(exc, duckdb.PermissionException):
        return SqlError(redact(f"not allowed: {exc}"))
    if isinstance(exc, duckdb.OutOfMemoryException):
        return SqlError(redact(f"the query needs more memory than the corpus store allows: {exc}"))
    return SqlError(redact(str(exc)) or type(exc).__name__)


def check_predicate(store: CorpusStore, predicate: str) -> str:
    """A user's condition over the trajectories view, checked by the console's gate; returns it parenthesised.

    The same bounds and one-SELECT rule as `run_sql`, and its brackets must balance, so the condition cannot
    close the parenthesis it is put in and change the query around it. Columns are those of `trajectories`
    (`t` is its alias). The condition is bound (not run) here: an unknown column is an SqlError naming it.
    """
    lexed = check_limits(predicate)
    depth = 0
    for kind, text in zip(lexed.kinds, lexed.texts, strict=True):
        if kind == "comment":
            raise SqlError("a condition cannot hold a comment (it could hide the rest of the query)")
        if text == ";":
            raise SqlError("a condition is one expression; remove the ';'")
        if kind == "operator" and text in _OPENERS:
            depth += 1
        elif kind == "operator" and text in _CLOSERS:
            depth -= 1
            if depth < 0:
                raise SqlError("the condition closes a bracket it did not open")
    if depth:
        raise SqlError("the condition leaves a bracket open")
    wrapped = f"({predicate.strip()})"
    cur = store.cursor()
    try:
        check_read_only(cur, f"SELECT t.trajectory_id FROM trajectories t WHERE {wrapped}")
        cur.sql(f"SELECT t.trajectory_id FROM trajectories t WHERE {wrapped}")  # binds names and types only
    except duckdb.Error as exc:
        raise SqlError(redact(f"the condition cannot be used: {exc}")) from exc
    finally:
        cur.close()
    return wrapped
