"""The trajectory list of the Explore page: one filtered, sorted page and its count, and text search through the index.

The list's columns are kept in DuckDB's memory once per corpus state (no task text, no metadata), so the queries
every interaction runs read no Parquet. An exact-text search the index can answer is planned once per query text
and corpus state (derived/search_index.plan_exact); its hits go into a table of the in-memory database, so that
every cursor's query can join them.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

from horizonlens.corpus.schema import TRAJECTORIES
from horizonlens.derived.search_index import ExactPlan, TextIndex, plan_exact, query_words
from horizonlens.errors import StoreError
from horizonlens.query.base import Store
from horizonlens.query.filters import FACET_FIELDS, FilterContext, TrajectoryFilter, where_sql
from horizonlens.storage.quoting import quote_ident

# Filter fields that are columns of the aggregate cube `agg_cube_trajectories` (a count needs no scan).
CUBE_FIELDS = FACET_FIELDS | {"min_steps", "max_steps"}
LIST_TABLE = "trajectory_list"  # the in-memory copy of the trajectory list
EXACT_PLANS_KEPT = 16  # exact-text searches whose results stay resolved (per corpus state)
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
        self.texts: TextIndex | None = None  # the search index's text copies (exact search), when up to date
        self._list_state: str | None = None  # the corpus state the in-memory list was made from
        self._list_lock = threading.Lock()
        self._plans: dict[str, tuple[ExactPlan, str | None]] = {}  # query text -> plan, its hits table
        self._hits_made = 0
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="horizonlens-query")

    def reset(self, texts: TextIndex | None) -> None:
        """Forget the exact-search plans (the index changed); `texts`: the index's text copies, if up to date."""
        for _, table in self._plans.values():
            if table:
                self.store.drop(table)
        self._plans = {}
        self.texts = texts

    def page(self, flt: TrajectoryFilter | None, sort: str, descending: bool, offset: int, limit: int) -> Page:
        """One page of trajectories matching the filter, sorted, plus the total count."""
        store = self.store
        if sort not in SORTABLE:
            raise StoreError(f"cannot sort by {sort!r}; choose one of {', '.join(SORTABLE)}")
        clauses, params = self.clauses(flt)
        where = where_sql(clauses)
        limit = max(1, min(int(limit), 1000))
        offset = max(0, int(offset))
        cols = ", ".join(f"t.{c}" for c in LIST_COLUMNS)
        order = f"t.{quote_ident(sort)} {'DESC' if descending else 'ASC'} NULLS LAST, t.trajectory_id"
        scans_text = False  # an exact search the index cannot answer scans the step text
        if flt is not None and flt.text and self._uses_exact(flt):
            scans_text = self.exact(flt.text) is None
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
        # the page and the total are independent: run them side by side (each on its own cursor)
        pending = self._pool.submit(store.query, f"SELECT {cols} FROM {source} t{where} ORDER BY {order} "
                                                 f"LIMIT ? OFFSET ?", [*params, limit, offset])
        total = store.scalar(f"SELECT count(*) FROM {source} t{where}", params)
        return Page(rows=pending.result(), total=int(total or 0), offset=offset, limit=limit)

    def warm(self) -> None:
        """Start making the in-memory list in the background."""
        self._pool.submit(self.table)

    def table(self) -> str:
        """The name of an in-memory table of every trajectory's list columns, made once per corpus state."""
        state = self.store.snapshot.fingerprint
        if self._list_state != state:
            with self._list_lock:
                if self._list_state != state:
                    self.store.materialize(LIST_TABLE, f"SELECT {', '.join(LIST_COLUMNS)} FROM trajectories "
                                                       f"ORDER BY started_at", "cannot read the trajectory list")
                    self._list_state = state
        return LIST_TABLE

    def clauses(self, flt: TrajectoryFilter | None) -> tuple[list[str], list[Any]]:
        """A filter's SQL conditions over `trajectories t` and their parameters (searches use the index)."""
        flt = flt or TrajectoryFilter()
        ctx = FilterContext(word_index=self.store.has_word_index)
        if flt.tool:
            self.store.aggregates()
            ctx = replace(ctx, aggregates=True)
        if flt.text and self._uses_exact(flt):
            resolved = self.exact(flt.text)
            if resolved is not None:
                ctx = replace(ctx, exact=resolved[0], exact_table=resolved[1])
        return flt.clauses(ctx)

    def _uses_exact(self, flt: TrajectoryFilter) -> bool:
        """Whether the filter's text is an exact-text search (not an all-words one)."""
        words_mode = flt.text_mode != "exact" and (self.store.has_word_index or flt.text_mode == "words")
        return not (words_mode and query_words(flt.text or ""))

    def exact(self, text: str) -> tuple[ExactPlan, str | None] | None:
        """An exact-text search resolved through the search index (cached per query while the corpus holds)."""
        texts, store = self.texts, self.store
        if texts is None:
            return None
        if text in self._plans:
            return self._plans[text]
        # searched without the store's lock: other queries go on while candidate texts are read
        plan = plan_exact(store.query, texts, text, int(store.scalar("SELECT count(*) FROM trajectories") or 0))
        if plan is None:
            return None
        with store.lock:
            if text in self._plans:
                return self._plans[text]
            table = None
            if plan.hits is not None:
                table = f"exact_hits_{self._hits_made:06d}"
                self._hits_made += 1
                store.con.register("_exact_hits_arrow", plan.hits)
                try:
                    store.con.execute(f"CREATE OR REPLACE TABLE {quote_ident(table)} AS SELECT * FROM "
                                      "_exact_hits_arrow")
                finally:
                    store.con.unregister("_exact_hits_arrow")
            while len(self._plans) >= EXACT_PLANS_KEPT:
                _, old_table = self._plans.pop(next(iter(self._plans)))
                if old_table:
                    store.drop(old_table)
            self._plans[text] = (plan, table)
            return plan, table

    def close(self) -> None:
        """Stop the query threads."""
        self._pool.shutdown(wait=True)
