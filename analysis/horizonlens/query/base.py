"""What the query modules need of the store they run on: the interface `CorpusStore` offers them.

A Protocol, so that the modules holding the store's queries (reads, listing) and the store that delegates to them
do not import each other.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from horizonlens.storage.dataset import Snapshot


class Store(Protocol):
    """An open corpus: its views, how to query them, and what derived data is up to date."""

    con: duckdb.DuckDBPyConnection
    lock: threading.RLock

    @property
    def snapshot(self) -> Snapshot:
        """The published state of the corpus tables."""
        ...

    @property
    def partitions(self) -> dict[str, list[str]]:
        """Hive partition keys of the corpus tables."""
        ...

    @property
    def has_word_index(self) -> bool:
        """Whether the search index is up to date."""
        ...

    @property
    def index_state(self) -> str | None:
        """Identifies the mounted state of the search index (None when it is not up to date)."""
        ...

    @property
    def has_aggregates(self) -> bool:
        """Whether the aggregate views read up-to-date files."""
        ...

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """Run one parameterized query."""
        ...

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        """The first value of a query."""
        ...

    def aggregates(self) -> None:
        """Make the aggregate views fast to query."""
        ...

    def materialize(self, name: str, sql: str, problem: str) -> None:
        """Create a table of the in-memory database from a query."""
        ...

    def drop(self, name: str) -> None:
        """Drop a view or table of the in-memory database."""
        ...
