"""The DuckDB store: a corpus opened read-only as views, one mount per dataset, and the queries over them.

The mounts (query/mounts.py) are the corpus tables, the search index, the aggregates, each checkpoint's replay
cache and the annotations; `views()` lists every view they make, with its columns. `refresh()` re-reads the
manifests that changed (a stat each when nothing did) and rebuilds those mounts' views; `version` changes with
them and is the key for caching query results.

Every query is parameterized (query/reads.py, query/listing.py). Once the views exist the connection is hardened:
file access is limited to the corpus directory and configuration is locked, so the power-user SQL console
(query/console.py) runs on the same connection. A corpus in object storage is read through pyarrow datasets
registered with DuckDB (storage/scan.py; docs/scale-out.md says why), so DuckDB itself reads no file at all.
"""

from __future__ import annotations

import threading
from typing import Any

import duckdb
import pyarrow as pa

from horizonlens.corpus.files import corpus_dataset
from horizonlens.derived.aggregates import SPEC as AGGREGATES
from horizonlens.derived.search_index import SPEC as SEARCH_INDEX
from horizonlens.derived.tool_use import SPEC as TOOL_USE
from horizonlens.errors import CorpusError, StoreError
from horizonlens.labels.annotations import annotations_dataset
from horizonlens.query import reads
from horizonlens.query.catalog import View, catalog, describe
from horizonlens.query.connection import connect, harden
from horizonlens.query.filters import TrajectoryFilter
from horizonlens.query.listing import LIST_COLUMNS, SORTABLE, Page, TrajectoryList
from horizonlens.query.mounts import (
    AnnotationsMount,
    CorpusMount,
    DerivedMount,
    Mount,
    ReplayMount,
    Views,
    create_replay_views,
    stamp,
)
from horizonlens.replays.layout import replay_checkpoints, replay_dataset
from horizonlens.storage.dataset import Snapshot
from horizonlens.storage.location import CorpusPath, as_location, redact
from horizonlens.storage.quoting import quote_ident
from horizonlens.storage.scan import FileScans

__all__ = ["LIST_COLUMNS", "SORTABLE", "CorpusStore", "Page", "View", "catalog", "open_store"]


class CorpusStore:
    """A read-only DuckDB view of one corpus. Thread-safe: each call uses its own cursor."""

    def __init__(self, root: CorpusPath | str, memory_limit: str = "2GB", threads: int | None = None):
        self.root: CorpusPath = as_location(root).resolve()
        self.lock = threading.RLock()  # held while views change and while cursors are made
        self._aggregates_lock = threading.Lock()  # held while the aggregates are computed in memory
        self._aggregates_in_memory = False
        self.con, self.spill_dir, self._remove_spill = connect(self, memory_limit, threads)
        self.scans = FileScans(self.root)
        self.views_ = Views(self.con, self.scans)
        self.lists = TrajectoryList(self)
        self.corpus_mount = CorpusMount(corpus_dataset(self.root))
        self.index_mount = DerivedMount(SEARCH_INDEX, self.corpus_mount)
        self.aggregate_mount = DerivedMount(AGGREGATES, self.corpus_mount)
        self.tool_use_mount = DerivedMount(TOOL_USE, self.corpus_mount)
        self.label_mount = AnnotationsMount(annotations_dataset(self.root))
        self.replay_mounts: dict[str, ReplayMount] = {}
        self._replay_stamps: Any = None
        with self.lock:
            self._mount_corpus()
            self._mount_replays()
            self._mount(self.label_mount)
        harden(self.con, self.root)

    # --- mounts -------------------------------------------------------------------------------------------------
    def _mount(self, mount: CorpusMount | DerivedMount | AnnotationsMount) -> None:
        mount.load()
        mount.create_views(self.views_)

    def _mount_corpus(self) -> None:
        self._mount(self.corpus_mount)
        self._mount_index()
        self._mount_aggregates()
        self._mount(self.tool_use_mount)

    def _mount_index(self) -> None:
        self._mount(self.index_mount)
        self.lists.reset()

    def _mount_aggregates(self) -> None:
        self._aggregates_in_memory = False
        self._mount(self.aggregate_mount)

    def _mount_replays(self) -> None:
        self._replay_stamps = self._stamp_replays()
        found = {}
        for ckpt in replay_checkpoints(self.root):
            mount = self.replay_mounts.get(ckpt) or ReplayMount(replay_dataset(self.root, ckpt), ckpt)
            if mount.stamp is None or mount.changed():
                mount.load()
            found[ckpt] = mount
        self.replay_mounts = found
        create_replay_views(self.views_, list(found.values()))

    def _stamp_replays(self) -> tuple[Any, ...]:
        return tuple((c, stamp(replay_dataset(self.root, c).manifest_path)) for c in replay_checkpoints(self.root))

    def refresh(self) -> bool:
        """Pick up what other writers published since the last look; True if any view changed."""
        changed = False
        with self.lock:
            if self.corpus_mount.changed():
                self._mount_corpus()
                changed = True
            else:
                for mount, remount in ((self.index_mount, self._mount_index),
                                       (self.aggregate_mount, self._mount_aggregates),
                                       (self.tool_use_mount, lambda: self._mount(self.tool_use_mount))):
                    if mount.changed():
                        remount()
                        changed = True
            if self._stamp_replays() != self._replay_stamps:
                self._mount_replays()
                changed = True
            if self.label_mount.changed():
                self._mount(self.label_mount)
                changed = True
        return changed

    def refresh_index(self) -> bool:
        """Pick up a search index built since the last look; whether it is up to date now."""
        self.refresh()
        return self.has_word_index

    def refresh_replays(self) -> list[str]:
        """Pick up replay caches written since the last look; the checkpoints with replays."""
        self.refresh()
        return self.replay_checkpoints

    @property
    def mounts(self) -> list[Mount]:
        """Every mount: the corpus, the labels, each checkpoint's replays, the search index, the aggregates."""
        return [self.corpus_mount, self.label_mount, *self.replay_mounts.values(), self.index_mount,
                self.aggregate_mount, self.tool_use_mount]

    @property
    def version(self) -> tuple[Any, ...]:
        """Identifies what the views show: the key for caching query results (changes with every commit)."""
        return tuple(sorted((m.key, m.fingerprint) for m in self.mounts if m.fingerprint is not None))

    @property
    def snapshot(self) -> Snapshot:
        """The published state of the corpus tables the views show."""
        assert self.corpus_mount.snapshot is not None
        return self.corpus_mount.snapshot

    @property
    def corpus_snapshot(self) -> Snapshot:
        """The published state of the corpus tables (the same as `snapshot`)."""
        return self.snapshot

    @property
    def manifest(self) -> dict[str, Any]:
        """The corpus manifest (sources, generator, planted parameters, ...)."""
        return self.snapshot.manifest

    @property
    def partitions(self) -> dict[str, list[str]]:
        """Hive partition keys of the corpus tables (lookups by trajectory prune partitions by them)."""
        return self.corpus_mount.partitions

    @property
    def problems(self) -> list[str]:
        """What was left out of the views and why: damaged replay files, labels, derived data."""
        return [p for m in self.mounts for p in m.problems]

    @property
    def label_problems(self) -> list[str]:
        """Labels files left out of the views, and why."""
        return list(self.label_mount.problems)

    @property
    def replay_checkpoints(self) -> list[str]:
        """Checkpoints with replays in the views, sorted."""
        return [c for c, m in self.replay_mounts.items() if m.replayed]

    @property
    def has_word_index(self) -> bool:
        """Whether the search index is up to date with the corpus (searches use it)."""
        return self.index_mount.snapshot is not None

    @property
    def index_state(self) -> str | None:
        """Identifies the mounted state of the search index (None when it is not up to date)."""
        return self.index_mount.fingerprint

    @property
    def has_aggregates(self) -> bool:
        """Whether the aggregate views read up-to-date files (else they are computed from the corpus)."""
        return self.aggregate_mount.snapshot is not None

    def views(self) -> list[View]:
        """Every view a query can use, with what it holds and its columns, in a stable order (query/catalog.py)."""
        return describe(self)

    # --- running queries ----------------------------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own for one query (DuckDB cursors are not shared between threads)."""
        with self.lock:
            return self.scans.attach(self.con.cursor())

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """Run one of the package's parameterized queries; errors become StoreError.

        A file deleted under the views by another writer's commit makes the query fail once: the store
        then re-reads the manifests and runs it again on the new state.
        """
        for attempt in (0, 1):
            cur = self.cursor()
            try:
                return cur.sql(sql, params=params or None).to_arrow_table()
            except duckdb.IOException as exc:
                if attempt == 0 and self.refresh():
                    continue
                raise StoreError(redact(f"query failed: {exc}")) from None
            except duckdb.Error as exc:
                raise StoreError(redact(f"query failed: {exc}")) from None
            finally:
                cur.close()
        raise AssertionError("unreachable")

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        """The first value of the first row of a query (None without rows)."""
        table = self.query(sql, params)
        return table.column(0)[0].as_py() if table.num_rows else None

    def materialize(self, name: str, sql: str, problem: str) -> None:
        """Create (or replace) a table of the in-memory database from a query, on a cursor of its own."""
        cur = self.cursor()
        try:
            cur.execute(f"CREATE OR REPLACE TABLE {quote_ident(name)} AS {sql}")
        except duckdb.Error as exc:
            raise StoreError(f"{problem} ({exc})") from exc
        finally:
            cur.close()

    def drop(self, name: str) -> None:
        """Drop a view or table of the in-memory database by name, whichever it is."""
        with self.lock:
            self.views_.drop(name)

    def aggregates(self) -> None:
        """Make the aggregate views fast to query.

        Up-to-date aggregate files are already open as views. Otherwise (never built, or the corpus changed
        since) the views compute them from the steps; here they are computed once, by the same SQL, and kept in
        memory until the corpus changes: one pass over the steps for every metric and filter.
        """
        if self.has_aggregates or self._aggregates_in_memory:
            return
        # a lock of its own: the other queries (the trajectory list, a step) go on while the steps are summarised
        with self._aggregates_lock:
            if self.has_aggregates or self._aggregates_in_memory:
                return
            for view, sql in AGGREGATES.fallback_sql().items():
                self.materialize(f"_computed_{view}", sql, "cannot summarise the corpus steps")
                with self.lock:
                    self.views_.drop(view)
                    self.con.execute(f"ALTER TABLE {quote_ident(f'_computed_{view}')} RENAME TO {quote_ident(view)}")
            self._aggregates_in_memory = True

    # --- the queries other layers call (query/reads.py, query/listing.py) ---------------------------------------
    def list_trajectories(self, flt: TrajectoryFilter | None = None, sort: str = "started_at", descending: bool = False,
                          offset: int = 0, limit: int = 50) -> Page:
        """One page of trajectories matching the filter, sorted, plus the total count."""
        return self.lists.page(flt, sort, descending, offset, limit)

    def filter_clauses(self, flt: TrajectoryFilter | None) -> tuple[list[str], list[Any]]:
        """A filter's SQL conditions over `trajectories t` and their parameters (searches use the index)."""
        return self.lists.clauses(flt)

    def warm(self) -> None:
        """Start making the in-memory trajectory list in the background (a server calls this on opening)."""
        self.lists.warm()

    def trajectory(self, trajectory_id: str) -> dict[str, Any] | None:
        """One trajectory's row as a dict, or None if the corpus has no such id."""
        return reads.trajectory(self, trajectory_id)

    def steps(self, trajectory_id: str, start: int = 0, stop: int | None = None) -> pa.Table:
        """The steps of one trajectory in order; [start, stop) windows a long one."""
        return reads.steps(self, trajectory_id, start, stop)

    def check_strip(self, trajectory_id: str) -> pa.Table:
        """Per step: source, check outcome, error label, decisive flag — the error timeline's data."""
        return reads.check_strip(self, trajectory_id)

    def find_in_trajectory(self, trajectory_id: str, text: str) -> list[int]:
        """Steps of one trajectory whose content contains `text` (case-insensitive, literal)."""
        return reads.find_in_trajectory(self, trajectory_id, text)

    def trials_of(self, task_id: str) -> list[str]:
        """The trajectories that are trials of one task, in trial order."""
        return reads.trials_of(self, task_id)

    def summary(self) -> dict[str, Any]:
        """Corpus totals: trajectories, steps, tokens, outcome and failed-check rates."""
        return reads.summary(self)

    def by_group(self, column: str = "domain") -> pa.Table:
        """Outcome and failed-check rates per domain/agent/teacher/source."""
        return reads.by_group(self, column)

    def length_histogram(self, column: str, edges: list[int]) -> pa.Table:
        """Trajectories per (outcome, length bin), as numpy.histogram counts them (query/reads.py)."""
        return reads.length_histogram(self, column, edges)

    def distinct(self, column: str) -> list[str]:
        """The values a facet column takes in this corpus, sorted (for filter choices)."""
        return reads.distinct(self, column)

    def tools(self) -> list[str]:
        """Names of every tool some step calls, sorted."""
        return reads.tools(self)

    def close(self) -> None:
        """Stop the query threads, close the DuckDB connection and remove its spill folder."""
        self.lists.close()
        self.con.close()
        self._remove_spill()


def open_store(root: CorpusPath | str) -> CorpusStore:
    """Open a corpus for querying; CorpusError says what is wrong with the directory."""
    try:
        return CorpusStore(root)
    except duckdb.Error as exc:
        raise CorpusError(redact(f"{root}: DuckDB could not open the corpus ({exc})")) from None

