"""The DuckDB store: a corpus directory opened read-only as views, and the queries over it.

Views are built from the published file lists of the corpus's datasets (corpus/dataset.py): the corpus
tables, the word index, and every checkpoint's replay cache. `refresh()` re-reads the manifests (a stat
per manifest when nothing changed) and rebuilds the views of what changed; `version` changes with them
and is the key for caching query results.

Every query here is parameterized: user input only ever reaches DuckDB as a bound parameter,
and identifiers (sort columns) come from fixed allow-lists. The connection is hardened once the
views exist: file access is limited to the corpus directory and configuration is locked, so the
power-user SQL entry point (`horizonlens.query.console`) can run on the same connection.

A replay-cache file that is missing, truncated or unreadable never stops the corpus from opening: it
is left out of the views and reported in `problems` (its trajectory is simply replayed again).

A corpus in object storage (`s3://bucket/prefix`) is read through pyarrow datasets over pyarrow's own
S3 filesystem, registered with DuckDB, which pushes projections and filters into them. That path was
picked by measurement (docs/scale-out.md): DuckDB's httpfs cannot be installed offline for DuckDB 2.x,
and an fsspec filesystem registered with DuckDB was 2-5x slower and is refused once external access is
off. DuckDB itself then reads no file at all, so its file access is switched off entirely.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import duckdb
import pyarrow as pa

from horizonlens.corpus.files import open_corpus_files, validate_file
from horizonlens.corpus.schema import TRAJECTORIES
from horizonlens.corpus.text import like_pattern, step_text_match, tool_names_sql
from horizonlens.derived.aggregates import SPEC as AGGREGATES
from horizonlens.derived.aggregates import recompute_sql
from horizonlens.derived.search_index import SPEC as SEARCH_INDEX
from horizonlens.derived.search_index import TEXT_TABLES, ExactPlan, TextIndex, plan_exact, query_words
from horizonlens.derived.spec import DerivedSpec, is_fresh
from horizonlens.errors import CorpusError, StoreError
from horizonlens.labels.annotations import (
    ANNOTATIONS,
    CURRENT_VIEW,
    HISTORY_VIEW,
    LABELS_TABLE,
    annotations_dataset,
    current_view_sql,
    empty_history_sql,
)
from horizonlens.query.filters import FACET_FIELDS, FilterContext, TrajectoryFilter, where_sql
from horizonlens.replays.codec import (
    SOURCE_TABLES,
    aggregate_view_sql,
    legacy_aggregate_sql,
    legacy_token_view_sql,
    token_view_sql,
)
from horizonlens.replays.layout import (
    CACHE_TABLES,
    COMPARE_TABLES,
    LEGACY_ROUTING,
    REPLAY_VIEWS,
    STEP_TIER,
    TOKEN_TIER,
    replay_checkpoints,
    replay_dataset,
    replays_dir,
)
from horizonlens.storage.dataset import MANIFEST, DataFile, Snapshot
from horizonlens.storage.location import (
    CorpusPath,
    ObjectPath,
    as_location,
    read_metadata,
    read_schema,
    read_table,
    redact,
)
from horizonlens.storage.quoting import quote_ident, sql_string
from horizonlens.storage.scan import FileScans, hive_keys

TRAJECTORY_COLUMNS = frozenset(TRAJECTORIES.names)
# Filter fields that are columns of the aggregate cube `agg_cube_trajectories` (a count needs no scan).
CUBE_FIELDS = FACET_FIELDS | {"min_steps", "max_steps"}
LIST_TABLE = "trajectory_list"  # the in-memory copy of the trajectory list (see CorpusStore.trajectory_list)
EXACT_PLANS_KEPT = 16  # exact-text searches whose results stay resolved (per corpus state)
# Sortable columns of the trajectory list (identifiers are never taken from user input).
SORTABLE = ("trajectory_id", "task_id", "domain", "agent", "teacher", "outcome", "reward", "n_steps", "n_tokens",
            "n_failed_checks", "first_failed_step", "started_at", "duration_s", "cost_usd")
LIST_COLUMNS = ("trajectory_id", "task_id", "trial", "source", "domain", "agent", "teacher", "outcome", "reward",
                "n_steps", "n_tokens", "n_failed_checks", "first_failed_step", "started_at", "duration_s", "cost_usd")


@dataclass
class Page:
    """One page of the trajectory list, with the total count over all pages."""

    rows: pa.Table
    total: int
    offset: int
    limit: int


class CorpusStore:
    """A read-only DuckDB view of one corpus directory. Thread-safe: each call uses its own cursor."""

    def __init__(self, root: CorpusPath | str, memory_limit: str = "2GB", threads: int | None = None):
        self.root: CorpusPath = as_location(root).resolve()
        self.scans = FileScans(self.root)
        self._lock = threading.RLock()
        self._aggregates_lock = threading.Lock()  # held while the aggregates are computed in memory
        self._list_lock = threading.Lock()  # held while the in-memory trajectory list is made
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="horizonlens-query")
        # DuckDB may always read its temp directory, by default `<cwd>/.tmp/`, where anyone could plant a
        # file: spill to a private folder of this store instead (mode 0700, removed on close)
        self.spill_dir = Path(tempfile.mkdtemp(prefix="horizonlens-duckdb-"))
        self._remove_spill = weakref.finalize(self, shutil.rmtree, self.spill_dir, ignore_errors=True)
        self.con = duckdb.connect(":memory:", config={"temp_directory": str(self.spill_dir)})
        self.con.execute(f"SET memory_limit = {sql_string(memory_limit)}")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        # keep Parquet footers in memory between queries: opening one trajectory then costs no footer reads
        self.con.execute("SET parquet_metadata_cache = true")
        # large scans (distinct tool names, window functions over all checks) need not keep row order; this
        # keeps them inside the memory limit on a 1M-trajectory corpus
        self.con.execute("SET preserve_insertion_order = false")
        self.partitions: dict[str, list[str]] = {}
        self.problems: list[str] = []  # damaged replay files left out of the views, for the user to see
        self.replay_checkpoints: list[str] = []
        self.replay_views: frozenset[str] = frozenset()  # the replay views that exist (corpus/layout.REPLAY_VIEWS)
        self.has_word_index = False
        self.has_aggregates = False  # the aggregate views read up-to-date files (else computed on demand)
        self._texts: TextIndex | None = None  # the search index's text copies (exact search), when up to date
        self._exact_plans: dict[str, tuple[ExactPlan, str | None]] = {}  # query text -> plan, its hits table
        self._hits_made = 0
        self.index_problem: str | None = None
        self._list_state: str | None = None  # the corpus state the in-memory trajectory list was made from
        self._aggregates_in_memory = False
        self._stamps: dict[str, Any] = {}
        self._fingerprints: dict[str, str] = {}
        self._open_corpus()
        self._open_index()
        self._open_aggregates()
        self._open_replays()
        self._open_annotations()
        # Harden: only the corpus directory (and the private spill folder) is readable from SQL from now on (in
        # object storage: no file at all, the views read through registered datasets); nothing can change that.
        allowed = "" if isinstance(self.root, ObjectPath) else sql_string(str(self.root) + "/")
        self.con.execute(f"SET allowed_directories = [{allowed}]")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")

    # --- views ---------------------------------------------------------------------------------
    def _stamp(self, manifest: CorpusPath) -> Any:
        try:
            st = manifest.stat()
        except (OSError, CorpusError):
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _open_corpus(self) -> None:
        files = open_corpus_files(self.root)  # validates every listed file of the corpus tables
        self.manifest = files.manifest
        self.snapshot = files.snapshot
        for name, paths in files.files.items():
            schemas = {read_schema(p).remove_metadata().to_string() for p in paths}
            # union_by_name makes DuckDB read every file's schema on every query (~3x slower on a
            # 1M-trajectory corpus); it is only needed when files differ in columns or column order.
            self._create_view(name, paths, union=len(schemas) > 1)
        self._stamps["corpus"] = self._stamp(self.root / MANIFEST)
        self._fingerprints["corpus"] = self.snapshot.fingerprint

    def _create_view(self, name: str, paths: Sequence[CorpusPath], union: bool) -> None:
        keys = hive_keys([p.as_posix() for p in paths])
        if keys:  # remember partition keys: lookups by trajectory can prune partitions
            self.partitions[name] = keys
        self.con.execute(f"CREATE OR REPLACE VIEW {quote_ident(name)} AS SELECT * FROM "
                         f"{self.scans.relation(self.con, name, paths, union)}")

    def _open_derived(self, spec: DerivedSpec, key: str) -> Snapshot | None:
        """Views over a derived dataset's tables if it was built from the corpus as it is now; its snapshot then."""
        dataset = spec.dataset(self.root)
        self._stamps[key] = self._stamp(dataset.manifest_path)
        snap = dataset.snapshot() if is_fresh(spec, self.snapshot) else None
        views: dict[str, list[CorpusPath]] = {}
        for table in spec.outputs:
            if table.view:
                views.setdefault(table.view, []).extend(snap.paths(table.name) if snap else [])
        for view, paths in views.items():
            self._drop(view)
            if paths:
                self._create_view(view, paths, union=False)
        if snap is not None:
            self._fingerprints[key] = snap.fingerprint
        else:
            self._fingerprints.pop(key, None)
        return snap

    def _open_index(self) -> None:
        """Use the search index if it was built from the corpus as it is now (else searches scan)."""
        snap = self._open_derived(SEARCH_INDEX, "index")
        self.has_word_index = snap is not None
        for _, table in self._exact_plans.values():
            if table:
                self._drop(table)
        self._exact_plans = {}
        self._texts = None
        self.index_problem = None
        if snap is not None:
            try:
                self._texts = TextIndex([p for t in TEXT_TABLES for p in snap.paths(t)])
            except (OSError, pa.ArrowException) as exc:
                self.index_problem = f"the search index's text copy is unreadable, exact searches scan ({exc})"

    def _open_aggregates(self) -> None:
        """Views over the corpus aggregates if they summarise the corpus as it is now; else none (see aggregates())."""
        self._aggregates_in_memory = False
        for view, _ in recompute_sql():
            self._drop(view)
        self.has_aggregates = self._open_derived(AGGREGATES, "aggregates") is not None

    def _drop(self, name: str) -> None:
        """Drop a view or table of this connection by name, whichever it is."""
        kinds = self.con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = ?",
                                 [name]).fetchall()
        for (kind,) in kinds:
            self.con.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} IF EXISTS {quote_ident(name)}")

    def aggregates(self) -> None:
        """Make the aggregate views (`agg_trajectories`, `agg_checks_by_j`) queryable.

        Up-to-date aggregate files are already open as views. Otherwise (never built, or the corpus changed
        since) they are computed here once from the steps, by the same SQL, and kept in memory until the
        corpus changes: one pass over the steps for every metric and filter, instead of one per query.
        """
        if self.has_aggregates or self._aggregates_in_memory:
            return
        # a lock of its own: the other queries (the trajectory list, a step) go on while the steps are summarised
        with self._aggregates_lock:
            if self.has_aggregates or self._aggregates_in_memory:
                return
            for view, sql in recompute_sql():
                self._materialize(view, sql, "cannot summarise the corpus steps")
            self._aggregates_in_memory = True

    def _materialize(self, name: str, sql: str, problem: str) -> None:
        """Create (or replace) a table of the in-memory database from a query, on a cursor of its own."""
        cur = self.cursor()
        try:
            cur.execute(f"CREATE OR REPLACE TABLE {quote_ident(name)} AS {sql}")
        except duckdb.Error as exc:
            raise StoreError(f"{problem} ({exc})") from exc
        finally:
            cur.close()

    def _open_replays(self) -> None:
        """Views over every checkpoint's replay cache, each with a checkpoint_id column.

        `replay_steps` (per step), `routing` (per token and layer, decoded from the compact token tier and
        from format-1 files alike), `routing_steps` and `routing_segments` (the step tier; for format-1
        files computed from their token rows), `routing_rollout` (an engine's routing, when imported) and
        `rollout_compare` / `rollout_compare_steps` (its comparison with the replay, metrics/rollout.py).
        Each checkpoint contributes its published files; a damaged file is left out and reported.
        """
        self._stamps["replays"] = self._replay_stamps()
        parts: dict[str, list[str]] = {view: [] for view in REPLAY_VIEWS}
        found, problems = [], []
        self.scans.forget(self.con, "replay_")
        for ckpt in replay_checkpoints(self.root):
            dataset = replay_dataset(self.root, ckpt)
            try:
                snap = dataset.snapshot() if dataset.exists() else dataset.snapshot({})
            except CorpusError as exc:
                problems.append(str(exc))
                continue
            self._fingerprints[f"replay:{ckpt}"] = snap.fingerprint
            good: dict[str, list[DataFile]] = {}
            for table, schema in CACHE_TABLES.items():
                for entry in snap.table(table):
                    try:
                        validate_file(snap.root / entry.path, schema, entry.bytes if snap.listed else None)
                    except CorpusError as exc:
                        problems.append(f"left out of the views: {exc}")
                        continue
                    good.setdefault(table, []).append(entry)

            def rel(key: str, entries: list[DataFile], root: CorpusPath = snap.root, ckpt: str = ckpt) -> str:
                return self.scans.relation(self.con, f"replay_{key}_{ckpt}", [root / e.path for e in entries], True)

            for view, select in _replay_selects(snap.root, good, rel):
                parts[view].append(f"SELECT *, {sql_string(ckpt)} AS checkpoint_id FROM ({select})")
            if good.get("steps"):
                found.append(ckpt)
        for view, selects in parts.items():
            if selects:
                self.con.execute(f"CREATE OR REPLACE VIEW {quote_ident(view)} AS "
                                 + " UNION ALL BY NAME ".join(selects))
            else:
                self.con.execute(f"DROP VIEW IF EXISTS {quote_ident(view)}")
        self.replay_checkpoints = found
        self.replay_views = frozenset(view for view, selects in parts.items() if selects)
        self.problems = problems

    def _replay_stamps(self) -> Any:
        base = replays_dir(self.root)
        return tuple((c, self._stamp(base / c / MANIFEST)) for c in replay_checkpoints(self.root))

    def _open_annotations(self) -> None:
        """Views `annotation_history` (every version) and `annotations` (current labels); empty without labels.

        The views always exist, so filters and facets by label work on any corpus. A damaged labels file is
        left out and reported in `label_problems`.
        """
        dataset = annotations_dataset(self.root)
        self._stamps["annotations"] = self._stamp(dataset.manifest_path)
        self.label_problems: list[str] = []
        self._fingerprints.pop("annotations", None)
        good: list[CorpusPath] = []
        if dataset.exists():
            try:
                snap = dataset.snapshot()
            except CorpusError as exc:
                self.label_problems.append(str(exc))
            else:
                self._fingerprints["annotations"] = snap.fingerprint
                for entry in snap.table(LABELS_TABLE):
                    try:
                        validate_file(snap.root / entry.path, ANNOTATIONS, entry.bytes)
                    except CorpusError as exc:
                        self.label_problems.append(f"left out of the labels: {exc}")
                        continue
                    good.append(snap.root / entry.path)
        history = (f"SELECT * FROM {self.scans.relation(self.con, 'annotations', good, True)}" if good
                   else empty_history_sql())
        self.con.execute(f"CREATE OR REPLACE VIEW {HISTORY_VIEW} AS {history}")
        self.con.execute(f"CREATE OR REPLACE VIEW {CURRENT_VIEW} AS {current_view_sql()}")

    def refresh(self) -> bool:
        """Pick up what other writers published since the last look; True if any view changed."""
        changed = False
        with self._lock:
            if self._stamp(self.root / MANIFEST) != self._stamps.get("corpus"):
                self._open_corpus()
                self._open_index()
                self._open_aggregates()
                changed = True
            else:
                if self._stamp(SEARCH_INDEX.dataset(self.root).manifest_path) != self._stamps.get("index"):
                    self._open_index()
                    changed = True
                if self._stamp(AGGREGATES.dataset(self.root).manifest_path) != self._stamps.get(
                        "aggregates"):
                    self._open_aggregates()
                    changed = True
            if self._replay_stamps() != self._stamps.get("replays"):
                self._open_replays()
                changed = True
            if self._stamp(annotations_dataset(self.root).manifest_path) != self._stamps.get("annotations"):
                self._open_annotations()
                changed = True
        return changed

    @property
    def version(self) -> tuple[Any, ...]:
        """Identifies what the views show: the key for caching query results (changes with every commit)."""
        return tuple(sorted(self._fingerprints.items()))

    @property
    def corpus_snapshot(self) -> Snapshot:
        """The published state of the corpus tables the views show."""
        return self.snapshot

    def filter_clauses(self, flt: TrajectoryFilter | None) -> tuple[list[str], list[Any]]:
        """A filter's SQL conditions over `trajectories t` and their parameters (searches use the index)."""
        flt = flt or TrajectoryFilter()
        ctx = FilterContext(word_index=self.has_word_index)
        if flt.tool:
            self.aggregates()
            ctx = replace(ctx, aggregates=True)
        if flt.text and self._uses_exact(flt):
            resolved = self._exact(flt.text)
            if resolved is not None:
                ctx = replace(ctx, exact=resolved[0], exact_table=resolved[1])
        return flt.clauses(ctx)

    def _uses_exact(self, flt: TrajectoryFilter) -> bool:
        """Whether the filter's text is an exact-text search (not an all-words one)."""
        words_mode = flt.text_mode != "exact" and (self.has_word_index or flt.text_mode == "words")
        return not (words_mode and query_words(flt.text or ""))

    def _exact(self, text: str) -> tuple[ExactPlan, str | None] | None:
        """An exact-text search resolved through the search index (cached per query while the corpus holds)."""
        texts = self._texts
        if texts is None:
            return None
        if text in self._exact_plans:
            return self._exact_plans[text]
        # searched without the store's lock: other queries go on while candidate texts are read
        plan = plan_exact(self.query, texts, text, int(self.scalar("SELECT count(*) FROM trajectories") or 0))
        if plan is None:
            return None
        with self._lock:
            if text in self._exact_plans:
                return self._exact_plans[text]
            table = None
            if plan.hits is not None:
                # the hits go into a table of the in-memory database, so every cursor's query can join them
                table = f"exact_hits_{self._hits_made:06d}"
                self._hits_made += 1
                self.con.register("_exact_hits_arrow", plan.hits)
                try:
                    self.con.execute(f"CREATE OR REPLACE TABLE {quote_ident(table)} AS SELECT * FROM _exact_hits_arrow")
                finally:
                    self.con.unregister("_exact_hits_arrow")
            while len(self._exact_plans) >= EXACT_PLANS_KEPT:
                _, old_table = self._exact_plans.pop(next(iter(self._exact_plans)))
                if old_table:
                    self._drop(old_table)
            self._exact_plans[text] = (plan, table)
            return plan, table

    def refresh_index(self) -> bool:
        """Re-check whether the word index is up to date with the corpus (after building it)."""
        self.refresh()
        return self.has_word_index

    def refresh_replays(self) -> list[str]:
        """Pick up replay caches written since the store was opened."""
        self.refresh()
        return self.replay_checkpoints

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own for one query (DuckDB cursors are not shared between threads)."""
        with self._lock:
            return self.scans.attach(self.con.cursor())

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """Run one of this module's parameterized queries; errors become StoreError.

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

    # --- queries -------------------------------------------------------------------------------
    def list_trajectories(self, flt: TrajectoryFilter | None = None, sort: str = "started_at", descending: bool = False,
                          offset: int = 0, limit: int = 50) -> Page:
        """One page of trajectories matching the filter, sorted, plus the total count."""
        if sort not in SORTABLE:
            raise StoreError(f"cannot sort by {sort!r}; choose one of {', '.join(SORTABLE)}")
        clauses, params = self.filter_clauses(flt)
        where = where_sql(clauses)
        limit = max(1, min(int(limit), 1000))
        offset = max(0, int(offset))
        cols = ", ".join(f"t.{c}" for c in LIST_COLUMNS)
        order = f"t.{quote_ident(sort)} {'DESC' if descending else 'ASC'} NULLS LAST, t.trajectory_id"
        scans_text = False  # an exact search the index cannot answer scans the step text
        if flt is not None and flt.text and self._uses_exact(flt):
            scans_text = self._exact(flt.text) is None
        if scans_text:
            # a text filter that scans step content: count in the same pass instead of scanning twice
            rows = self.query(f"SELECT {cols}, count(*) OVER () AS _total FROM trajectories t{where} "
                              f"ORDER BY {order} LIMIT ? OFFSET ?", [*params, limit, offset])
            if rows.num_rows:
                total = rows["_total"][0].as_py()
                return Page(rows=rows.drop_columns(["_total"]), total=int(total), offset=offset, limit=limit)
        source = "trajectories" if scans_text else self.trajectory_list()
        if self.has_aggregates and (flt is None or flt.uses_only(CUBE_FIELDS)):
            # the count of a filter on facets and step counts is a sum over the cube's cells: no scan at all
            page = self.query(f"SELECT {cols} FROM {source} t{where} ORDER BY {order} LIMIT ? OFFSET ?",
                              [*params, limit, offset])
            total = self.scalar(f"SELECT sum(t.trajectories) FROM agg_cube_trajectories t{where}", params)
            return Page(rows=page, total=int(total or 0), offset=offset, limit=limit)
        # the page and the total are independent: run them side by side (each on its own cursor)
        pending = self._pool.submit(self.query, f"SELECT {cols} FROM {source} t{where} ORDER BY {order} "
                                                f"LIMIT ? OFFSET ?", [*params, limit, offset])
        total = self.scalar(f"SELECT count(*) FROM {source} t{where}", params)
        return Page(rows=pending.result(), total=int(total or 0), offset=offset, limit=limit)

    def warm(self) -> None:
        """Start making the in-memory trajectory list in the background (a server calls this on opening)."""
        self._pool.submit(self.trajectory_list)

    def trajectory_list(self) -> str:
        """The name of an in-memory table of every trajectory's list columns, made once per corpus state.

        The trajectory list is what the Explore page filters, sorts and counts on every interaction; kept in
        DuckDB's memory (no task text, no metadata: ~150 bytes a trajectory) those queries read no Parquet.
        Filters that need the task text (an exact search without an index) read the `trajectories` view.
        """
        state = self.snapshot.fingerprint
        if self._list_state != state:
            with self._list_lock:
                if self._list_state != state:
                    self._materialize(LIST_TABLE, f"SELECT {', '.join(LIST_COLUMNS)} FROM trajectories "
                                                  f"ORDER BY started_at", "cannot read the trajectory list")
                    self._list_state = state
        return LIST_TABLE

    def trajectory(self, trajectory_id: str) -> dict[str, Any] | None:
        """One trajectory's row as a dict, or None if the corpus has no such id."""
        table = self.query("SELECT * FROM trajectories WHERE trajectory_id = ?", [trajectory_id])
        return table.to_pylist()[0] if table.num_rows else None

    def _one_trajectory(self, trajectory_id: str) -> tuple[str, list[Any]]:
        """Conditions (over `steps s`) that select one trajectory's steps, and their parameters.

        When the steps are hive-partitioned by a trajectory column (e.g. domain), the trajectory's value is looked
        up first so that one partition is read.
        """
        sql = "s.trajectory_id = ?"
        params: list[Any] = [trajectory_id]
        keys = [k for k in self.partitions.get("steps", []) if k in TRAJECTORY_COLUMNS]
        if keys:
            row = self.query(f"SELECT {', '.join(quote_ident(k) for k in keys)} FROM trajectories "
                             f"WHERE trajectory_id = ?", [trajectory_id]).to_pylist()
            for k in keys if row else []:
                sql += f" AND CAST(s.{quote_ident(k)} AS VARCHAR) = ?"
                params.append(str(row[0][k]))
        return sql, params

    def steps(self, trajectory_id: str, start: int = 0, stop: int | None = None) -> pa.Table:
        """The steps of one trajectory in order; [start, stop) windows a long one."""
        where, params = self._one_trajectory(trajectory_id)
        sql = f"SELECT * FROM steps s WHERE {where} AND s.step >= ?"
        params.append(int(start))
        if stop is not None:
            sql += " AND s.step < ?"
            params.append(int(stop))
        return self.query(sql + " ORDER BY s.step", params)

    def check_strip(self, trajectory_id: str) -> pa.Table:
        """Per step: source, check outcome, error label, decisive flag — the error timeline's data."""
        where, params = self._one_trajectory(trajectory_id)
        return self.query(f"SELECT s.step, s.source, s.check_passed, s.error_label, s.is_decisive_error, "
                          f"{tool_names_sql('s')} AS tools FROM steps s WHERE {where} ORDER BY s.step", params)

    def find_in_trajectory(self, trajectory_id: str, text: str) -> list[int]:
        """Steps of one trajectory whose content contains `text` (case-insensitive, literal)."""
        match, n = step_text_match("s")
        where, params = self._one_trajectory(trajectory_id)
        table = self.query(f"SELECT s.step FROM steps s WHERE {where} AND {match} ORDER BY s.step",
                           [*params, *([like_pattern(text)] * n)])
        return table.column("step").to_pylist()

    def summary(self) -> dict[str, Any]:
        """Corpus totals: trajectories, steps, tokens, outcome and failed-check rates."""
        row = self.query(
            "SELECT count(*) AS trajectories, sum(n_steps)::BIGINT AS steps, sum(n_tokens)::BIGINT AS tokens, "
            "max(n_tokens) AS max_tokens, max(n_steps) AS max_steps, "
            "avg(CASE WHEN outcome = 'success' THEN 1.0 WHEN outcome = 'failure' THEN 0.0 END) AS success_rate, "
            "avg(CASE WHEN n_failed_checks > 0 THEN 1.0 ELSE 0.0 END) AS share_with_failed_checks, "
            "count(DISTINCT task_id) AS tasks FROM trajectories").to_pylist()[0]
        return row

    def by_group(self, column: str = "domain") -> pa.Table:
        """Outcome and failed-check rates per domain/agent/teacher/source."""
        if column not in ("domain", "agent", "teacher", "source", "outcome"):
            raise StoreError(f"cannot group by {column!r}")
        col = quote_ident(column)
        self.aggregates()
        # one pass over the cube (a row per facet cell and step count); the median step count comes from the
        # step-count histogram of each group, interpolated as DuckDB's median (quantile_cont) does
        return self.query(f"""
            WITH h AS (SELECT t.{col} AS g, t.n_steps AS x, sum(t.trajectories) AS n FROM agg_cube_trajectories t
                       WHERE t.n_steps IS NOT NULL GROUP BY ALL),
            c AS (SELECT g, x, sum(n) OVER (PARTITION BY g ORDER BY x) AS cum, sum(n) OVER (PARTITION BY g) AS total
                  FROM h),
            m AS (SELECT g, min(x) FILTER (WHERE cum > floor((total - 1) / 2)) AS lo,
                         min(x) FILTER (WHERE cum > ceil((total - 1) / 2)) AS hi, any_value(total) AS total
                  FROM c GROUP BY g)
            SELECT t.{col} AS {col}, CAST(sum(t.trajectories) AS BIGINT) AS trajectories,
                   CAST(sum(t.trajectories) FILTER (WHERE t.outcome = 'success') AS DOUBLE)
                     / sum(t.trajectories) FILTER (WHERE t.outcome IN ('success', 'failure')) AS success_rate,
                   sum(t.failures) / nullif(sum(t.checks), 0) AS failed_check_rate,
                   any_value(CAST(m.lo AS DOUBLE) + (m.hi - m.lo) * ((m.total - 1) / 2 - floor((m.total - 1) / 2)))
                     AS median_steps,
                   CAST(sum(t.tokens) AS BIGINT) AS tokens
            FROM agg_cube_trajectories t LEFT JOIN m ON m.g IS NOT DISTINCT FROM t.{col}
            GROUP BY t.{col} ORDER BY t.{col}""")

    def length_histogram(self, column: str, edges: list[int]) -> pa.Table:
        """Trajectories per (outcome, length bin), as numpy.histogram counts them; lengths below 1 count as 1.

        Bin i holds edges[i] <= length < edges[i+1]; the last bin also holds its right edge.
        """
        if column not in ("n_steps", "n_tokens"):
            raise StoreError(f"no length histogram of {column!r}")
        if len(edges) < 2:
            return pa.table({"outcome": pa.array([], pa.string()), "bin": pa.array([], pa.int64()),
                             "trajectories": pa.array([], pa.int64())})
        x = f"greatest(coalesce(t.{quote_ident(column)}, 0), 1)"
        # the number of inner edges at or below x is the bin; the last edge closes the last bin
        return self.query(
            f"SELECT t.outcome, least(len(list_filter(?::BIGINT[], lambda e: e <= {x})), ?) - 1 AS bin, "
            f"count(*) AS trajectories FROM trajectories t WHERE {x} BETWEEN ? AND ? GROUP BY ALL ORDER BY ALL",
            [list(map(int, edges[:-1])), len(edges) - 1, int(edges[0]), int(edges[-1])])

    def distinct(self, column: str) -> list[str]:
        """The values a facet column takes in this corpus, sorted (for filter choices)."""
        if column not in ("domain", "agent", "teacher", "source", "outcome"):
            raise StoreError(f"cannot list values of {column!r}")
        # the cube has a row for every combination of facet values that occurs: a few thousand rows, not 1M
        source = "agg_cube_trajectories" if self.has_aggregates else "trajectories"
        table = self.query(f"SELECT DISTINCT {quote_ident(column)} AS v FROM {source} "
                           "WHERE v IS NOT NULL ORDER BY v")
        return table.column("v").to_pylist()

    def tools(self) -> list[str]:
        """Names of every tool some step calls, sorted."""
        self.aggregates()  # a rollup of the per-trajectory tool lists, instead of every step's tool calls
        return self.query("SELECT name FROM agg_tools ORDER BY name").column("name").to_pylist()

    def trials_of(self, task_id: str) -> list[str]:
        """The trajectories that are trials of one task, in trial order."""
        table = self.query("SELECT trajectory_id FROM trajectories WHERE task_id = ? ORDER BY trial, trajectory_id",
                           [task_id])
        return table.column("trajectory_id").to_pylist()

    def close(self) -> None:
        """Stop the query threads, close the DuckDB connection and remove its spill folder."""
        self._pool.shutdown(wait=True)
        self.con.close()
        self._remove_spill()


def _replay_selects(root: CorpusPath, files: dict[str, list[DataFile]],
                    rel: Callable[[str, list[DataFile]], str]) -> list[tuple[str, str]]:
    """(view, SELECT) pairs over one checkpoint's validated replay-cache files; `rel(key, files)` scans files."""
    out = []
    if files.get("steps"):
        out.append(("replay_steps", f"SELECT * FROM {rel('steps', files['steps'])}"))
    for view, table in (("routing", TOKEN_TIER), ("routing_rollout", SOURCE_TABLES["rollout"])):
        by_k: dict[int, list[DataFile]] = {}
        for entry in files.get(table, []):
            k = _top_k(root, entry)
            if k:
                by_k.setdefault(k, []).append(entry)
        out += [(view, token_view_sql(rel(f"{view}_k{k}", entries), k)) for k, entries in sorted(by_k.items())]
    for view, key in zip(STEP_TIER, ("step", "segment"), strict=True):
        if files.get(view):
            out.append((view, aggregate_view_sql(rel(view, files[view]), key)))
    out += [(table, f"SELECT * FROM {rel(table, files[table])}") for table in COMPARE_TABLES if files.get(table)]
    legacy = files.get(LEGACY_ROUTING)
    if legacy:  # format 1: token rows only; the step tier is computed from them
        out.append(("routing", legacy_token_view_sql(rel("legacy", legacy))))
        out += [(view, legacy_aggregate_sql(rel("legacy", legacy), key))
                for view, key in zip(STEP_TIER, ("step", "segment"), strict=True)]
    return out


def _top_k(root: CorpusPath, entry: DataFile) -> int:
    """Experts per token of a token-tier file: from its manifest entry, else its first row (0: no rows)."""
    k = entry.meta.get("top_k")
    if isinstance(k, int) and k > 0:
        return k
    try:
        if read_metadata(root / entry.path).num_rows == 0:
            return 0
        value = read_table(root / entry.path, columns=["experts"]).column(0)[0].as_py()
    except (OSError, pa.ArrowException, IndexError, CorpusError):
        return 0
    return len(value or [])


def open_store(root: Path | str) -> CorpusStore:
    """Open a corpus for querying; CorpusError says what is wrong with the directory."""
    try:
        return CorpusStore(root)
    except duckdb.Error as exc:
        raise CorpusError(redact(f"{root}: DuckDB could not open the corpus ({exc})")) from None
