"""The trajectory list of the Explore page: one filtered, sorted page and its count, and text search through the index.

The list's columns are kept in DuckDB's memory once per corpus state (no task text, no metadata), so the queries
every interaction runs read no Parquet. A text search (all words or exact text) is resolved through the search
index once per query text and corpus state (query/search.py); its hits go into a table of the in-memory
database, so that every cursor's query can join them.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa

from horizonlens.corpus.schema import TRAJECTORIES
from horizonlens.derived.search_index import query_words
from horizonlens.errors import StoreError
from horizonlens.query.base import Store
from horizonlens.query.filters import FACET_FIELDS, FilterContext, TrajectoryFilter, where_sql
from horizonlens.query.search import TextHits, TextSearch
from horizonlens.storage.quoting import quote_ident

# Filter fields that are columns of the aggregate cube `agg_cube_trajectories` (a count needs no scan).
CUBE_FIELDS = FACET_FIELDS | {"min_steps", "max_steps"}
TEXT_FIELDS = frozenset({"text", "text_mode"})
LIST_TABLE = "trajectory_list"  # the in-memory copy of the trajectory list
SEARCHES_KEPT = 16  # text searches whose results stay resolved (per corpus state)
# Sortable columns of the trajectory list (identifiers are never taken from user input).
SORTABLE = ("trajectory_id", "task_id", "domain", "agent", "teacher", "outcome", "reward", "n_steps", "n_tokens",
            "n_failed_checks", "first_failed_step", "started_at", "duration_s", "cost_usd")
LIST_COLUMNS = ("trajectory_id", "task_id", "trial", "source", "domain", "agent", "teacher", "outcome", "reward",
                "n_steps", "n_tokens", "n_failed_checks", "first_failed_step", "started_at", "duration_s", "cost_usd")
TRAJECTORY_COLUMNS = frozenset(TRAJECTORIES.names)


@dataclass
class Page:
    """One page of the trajectory list, with the total count over all pages."""

    rows: pa.Table
    total: int
    offset: int
    limit: int


class TrajectoryList:
    """The store's trajectory list and text search (the state they keep per corpus state)."""

    def __init__(self, store: Store):
        self.store = store
        self._list_state: str | None = None  # the corpus state the in-memory list was made from
        self._list_lock = threading.Lock()
        self._search: tuple[tuple[str, str | None], TextSearch] | None = None  # (list state, index state) -> search
        self._search_lock = threading.Lock()
        self._hits: dict[tuple[str, str], tuple[TextHits, str]] = {}  # (mode, text) -> hits, their table
        self._tables_made = 0
        self._searches_made = 0
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="horizonlens-query")

    def forget_searches(self) -> None:
        """Forget the resolved text searches (the next search of each text reads the index again)."""
        with self.store.lock:
            for _, table in self._hits.values():
                self.store.drop(table)
            self._hits = {}

    def reset(self) -> None:
        """Forget the resolved searches and the index's state (the corpus or its index changed)."""
        with self.store.lock:
            self.forget_searches()
            if self._search is not None:
                self._search[1].close()
            self._search = None

    def page(self, flt: TrajectoryFilter | None, sort: str, descending: bool, offset: int, limit: int) -> Page:
        """One page of trajectories matching the filter, sorted, plus the total count."""
        store = self.store
        if sort not in SORTABLE:
            raise StoreError(f"cannot sort by {sort!r}; choose one of {', '.join(SORTABLE)}")
        # without an up-to-date index a text filter scans the step text
        scans_text = flt is not None and bool(flt.text) and not self.store.has_word_index
        clauses, params = self.clauses(flt, over_list=not scans_text)
        where = where_sql(clauses)
        limit = max(1, min(int(limit), 1000))
        offset = max(0, int(offset))
        cols = ", ".join(f"t.{c}" for c in LIST_COLUMNS)
        order = f"t.{quote_ident(sort)} {'DESC' if descending else 'ASC'} NULLS LAST, t.trajectory_id"
        if scans_text:
            # a text filter that scans step content: count in the same pass instead of scanning twice
            rows = store.query(f"SELECT {cols}, count(*) OVER () AS _total FROM trajectories t{where} "
                               f"ORDER BY {order} LIMIT ? OFFSET ?", [*params, limit, offset])
            if rows.num_rows:
                total = rows["_total"][0].as_py()
                return Page(rows=rows.drop_columns(["_total"]), total=int(total), offset=offset, limit=limit)
        source = "trajectories" if scans_text else self.table()
        if store.has_aggregates and (flt is None or flt.uses_only(CUBE_FIELDS)):
            # the count of a filter on facets and step counts is a sum over the cube's cells: no scan at all
            page = store.query(f"SELECT {cols} FROM {source} t{where} ORDER BY {order} LIMIT ? OFFSET ?",
                               [*params, limit, offset])
            total = store.scalar(f"SELECT sum(t.trajectories) FROM agg_cube_trajectories t{where}", params)
            return Page(rows=page, total=int(total or 0), offset=offset, limit=limit)
        resolved = self._hits.get((flt.search_mode(True), flt.text)) if flt is not None and flt.text else None
        if resolved is not None and flt is not None and flt.uses_only(TEXT_FIELDS):
            # a text search alone: its hits are the count
            rows = store.query(f"SELECT {cols} FROM {source} t{where} ORDER BY {order} LIMIT ? OFFSET ?",
                               [*params, limit, offset])
            return Page(rows=rows, total=len(resolved[0].gids), offset=offset, limit=limit)
        # the page and the total are independent: run them side by side (each on its own cursor)
        pending = self._pool.submit(store.query, f"SELECT {cols} FROM {source} t{where} ORDER BY {order} "
                                                 f"LIMIT ? OFFSET ?", [*params, limit, offset])
        total = store.scalar(f"SELECT count(*) FROM {source} t{where}", params)
        return Page(rows=pending.result(), total=int(total or 0), offset=offset, limit=limit)

    def warm(self) -> None:
        """Start making the in-memory list, and the search index's view of it, in the background."""
        self._pool.submit(self.text_search if self.store.has_word_index else self.table)

    def table(self) -> str:
        """The name of an in-memory table of every trajectory's list columns, made once per corpus state."""
        state = self.store.snapshot.fingerprint
        if self._list_state != state:
            with self._list_lock:
                if self._list_state != state:
                    # gid: the trajectory's number in the list, the one numbering of text search (query/search.py)
                    self.store.materialize(LIST_TABLE, f"SELECT {', '.join(LIST_COLUMNS)}, CAST(row_number() OVER "
                                                       f"(ORDER BY trajectory_id) - 1 AS INTEGER) AS gid FROM "
                                                       f"trajectories ORDER BY started_at",
                                           "cannot read the trajectory list")
                    self._list_state = state
        return LIST_TABLE

    def clauses(self, flt: TrajectoryFilter | None, over_list: bool = False) -> tuple[list[str], list[Any]]:
        """A filter's SQL conditions over `trajectories t` and their parameters (searches use the index).

        `over_list`: `t` is the in-memory list (its gid column matches resolved searches faster than ids).
        """
        flt = flt or TrajectoryFilter()
        ctx = FilterContext(word_index=self.store.has_word_index, over_list=over_list)
        if flt.tool:
            self.store.aggregates()
            ctx = replace(ctx, aggregates=True)
        if flt.text and ctx.word_index:
            resolved = self.search(flt.text, flt.search_mode(True))
            if resolved is not None:
                search = self.text_search()
                every = search is not None and len(resolved[0].gids) == search.n
                ctx = replace(ctx, text_table=resolved[1], text_matches_all=every)
        return flt.clauses(ctx)

    def text_search(self) -> TextSearch | None:
        """The search index over the list as of the current corpus state (None without an up-to-date index)."""
        if not self.store.has_word_index:
            return None
        key = (self.store.snapshot.fingerprint, self.store.index_state)
        found = self._search
        if found is not None and found[0] == key:
            return found[1]
        with self._search_lock:
            found = self._search
            if found is None or found[0] != key:
                if found is not None:
                    found[1].close()
                self._searches_made += 1
                found = (key, TextSearch(self.store, self.table(), self._candidates_table,
                                         f"_text_search_{self._searches_made:04d}"))
                self._search = found
            return found[1]

    def search(self, text: str, mode: str) -> tuple[TextHits, str] | None:
        """A text search resolved through the index, and the table of its hits; None without an up-to-date index.

        `mode`: "words" or "exact". Cached per text while the corpus and the index stay as they are.
        """
        search = self.text_search()
        if search is None:
            return None
        key = (mode, text)
        if key in self._hits:
            return self._hits[key]
        # resolved without the store's lock: other queries go on while postings (and maybe text) are read
        hits = search.words(query_words(text)) if mode == "words" else search.exact(text)
        with self.store.lock:
            if key in self._hits:
                return self._hits[key]
            table = self._hits_table(hits.gids, search.ids.take(pa.array(hits.gids)))
            while len(self._hits) >= SEARCHES_KEPT:
                _, old = self._hits.pop(next(iter(self._hits)))
                self.store.drop(old)
            self._hits[key] = (hits, table)
            return hits, table

    def exact(self, text: str) -> tuple[TextHits, str] | None:
        """An exact-text search resolved through the index (see `search`)."""
        return self.search(text, "exact")

    def _candidates_table(self, gids: np.ndarray) -> str:
        """`_hits_table` for trajectories a text search must still check (query/search.py)."""
        search = self.text_search()
        assert search is not None
        return self._hits_table(gids, search.ids.take(pa.array(gids)))

    def _hits_table(self, gids: np.ndarray, ids: pa.Array) -> str:
        """A new table of the in-memory database: these gids of the list and their trajectory ids."""
        store = self.store
        with store.lock:
            name = f"text_hits_{self._tables_made:06d}"
            self._tables_made += 1
            store.con.register("_hits_arrow", pa.table({"gid": pa.array(gids, pa.int32()), "trajectory_id": ids}))
            try:
                store.con.execute(f"CREATE OR REPLACE TABLE {quote_ident(name)} AS SELECT * FROM _hits_arrow")
            finally:
                store.con.unregister("_hits_arrow")
            return name

    def close(self) -> None:
        """Stop the query threads."""
        self._pool.shutdown(wait=True)
