"""Queries: the store that mounts a corpus's datasets as DuckDB views, its filters and search, and the SQL console."""

from horizonlens.query import labels
from horizonlens.query.console import EXAMPLES, SqlResult, run_sql
from horizonlens.query.filters import TrajectoryFilter, where_sql
from horizonlens.query.store import LIST_COLUMNS, SORTABLE, CorpusStore, Page, View, open_store

__all__ = [
    "labels", "CorpusStore", "EXAMPLES", "LIST_COLUMNS", "Page", "SORTABLE", "SqlResult", "TrajectoryFilter",
    "View", "open_store", "run_sql", "where_sql"
]
