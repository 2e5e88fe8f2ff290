"""What the store's queries read: every query profiled by DuckDB's EXPLAIN ANALYZE, its Parquet scans recorded.

`ScanLog` wraps `CorpusStore.query` while it is installed: each query runs as usual, and once more under
`EXPLAIN (ANALYZE, FORMAT JSON)`, whose plan gives for every Parquet scan the files it read, the rows it
scanned and the row groups it read of those in the files (the rest pruned by their statistics). A view that
shows one step of a run scans that step's rows; one that reads the whole run scans all of them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from horizonlens.query.store import CorpusStore


@dataclass
class Scan:
    """One Parquet scan of one query: its SQL, the tables (folders) of its files, rows and row groups read."""

    sql: str
    tables: set[str]
    rows: int
    row_groups: int
    of_row_groups: int


@dataclass
class ScanLog:
    """The Parquet scans of every store query run while it is installed (`install`)."""

    scans: list[Scan] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> ScanLog:
        original = CorpusStore.query
        log = self

        def query(store: CorpusStore, sql: str, params: list[Any] | None = None) -> Any:
            result = original(store, sql, params)
            if sql.lstrip().upper().startswith(("SELECT", "WITH")):
                cur = store.cursor()
                try:
                    plan = cur.sql("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params=params or None).fetchall()[0][1]
                finally:
                    cur.close()
                log.scans += parse(sql, json.loads(plan))
            return result

        monkeypatch.setattr(CorpusStore, "query", query)
        return self

    def of(self, table: str) -> list[Scan]:
        """The scans that read files of one table (a folder name, say `routing_tokens`)."""
        return [s for s in self.scans if table in s.tables]


def parse(sql: str, plan: Any) -> list[Scan]:
    """Every Parquet scan in a JSON query profile."""
    out: list[Scan] = []

    def walk(node: dict[str, Any]) -> None:
        files = node.get("extra_info", {}).get("Filename(s)") if isinstance(node.get("extra_info"), dict) else None
        if node.get("type") == "TABLE_SCAN" and files:
            out.append(Scan(sql, set(re.findall(r"/([a-z_]+)/[^/,\s]+\.parquet", files)), int(node["rows_scanned"]),
                            int(node["row_groups_scanned"]), int(node["total_row_groups_to_scan"])))
        for child in node.get("children", []):
            walk(child)

    for top in plan.get("operator", []) if isinstance(plan, dict) else []:
        walk(top)
    return out
