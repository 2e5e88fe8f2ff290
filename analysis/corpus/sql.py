"""The power-user SQL entry point: one read-only SELECT over the corpus views, capped and timed.

Three layers keep it read-only: (1) the statement must parse as exactly one SELECT (so COPY,
ATTACH, INSTALL, SET, PRAGMA, CREATE, INSERT... are refused before they run); (2) the store's
connection only reads files inside the corpus directory and its configuration is locked; (3) the
query runs on its own cursor and is interrupted after the time limit.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from horizonlens.corpus.storage import redact
from horizonlens.corpus.store import CorpusStore
from horizonlens.errors import SqlError

DEFAULT_ROW_CAP = 10_000
DEFAULT_TIMEOUT_S = 10.0

EXAMPLES: dict[str, str] = {
    "Failure rate by domain": (
        "SELECT domain, count(*) AS trajectories,\n"
        "       avg((outcome = 'failure')::INT) AS failure_rate\n"
        "FROM trajectories GROUP BY domain ORDER BY failure_rate DESC"),
    "Most common error labels": (
        "SELECT error_label, count(*) AS n FROM steps\n"
        "WHERE check_passed = false GROUP BY error_label ORDER BY n DESC"),
    "Tool usage and failure rate": (
        "SELECT c.name AS tool, count(*) AS calls,\n"
        "       avg((check_passed = false)::INT) AS failed_share\n"
        "FROM steps, unnest(tool_calls) AS u(c) GROUP BY tool ORDER BY calls DESC"),
    "Longest trajectories": (
        "SELECT trajectory_id, domain, agent, n_steps, n_tokens, outcome\n"
        "FROM trajectories ORDER BY n_tokens DESC LIMIT 20"),
}


@dataclass
class SqlResult:
    """The rows of one user query, at most `row_cap` of them."""

    table: pa.Table
    truncated: bool  # more rows existed than the cap
    row_cap: int


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but exactly one SELECT statement."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlError(f"could not parse the SQL: {exc}") from exc
    if len(statements) != 1:
        raise SqlError(f"expected exactly one statement, got {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise SqlError(f"only SELECT queries are allowed here (this is a {kind.name} statement)")


def run_sql(store: CorpusStore, sql: str, row_cap: int = DEFAULT_ROW_CAP,
            timeout_s: float = DEFAULT_TIMEOUT_S) -> SqlResult:
    """Run one read-only SELECT; at most `row_cap` rows; interrupted after `timeout_s` seconds."""
    if not sql or not sql.strip():
        raise SqlError("the query is empty")
    cur = store.cursor()
    try:
        check_read_only(cur, sql)
        timer = threading.Timer(timeout_s, cur.interrupt)
        timer.start()
        try:
            reader = cur.sql(sql).to_arrow_reader(min(row_cap + 1, 65_536))
            batches, n = [], 0
            for batch in reader:
                batches.append(batch)
                n += batch.num_rows
                if n > row_cap:
                    break
        finally:
            timer.cancel()
        table = pa.Table.from_batches(batches, schema=reader.schema) if batches else reader.schema.empty_table()
        truncated = table.num_rows > row_cap
        return SqlResult(table=table.slice(0, row_cap), truncated=truncated, row_cap=row_cap)
    except duckdb.InterruptException as exc:
        raise SqlError(f"the query ran longer than {timeout_s:g} s and was stopped") from exc
    except duckdb.PermissionException as exc:
        raise SqlError(redact(f"not allowed: {exc}")) from None
    except duckdb.Error as exc:
        raise SqlError(redact(str(exc))) from None
    finally:
        cur.close()
