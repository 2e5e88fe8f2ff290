"""The store's mounts: each dataset of a corpus read, checked and shown as DuckDB views in one way.

A mount reads its dataset's published state (the manifest, through the one validator), checks every listed file
(its size against the manifest, its footer, its schema) and creates its views over the files that passed. What is
wrong is collected in one place, `Mount.problems`: for the corpus tables a problem stops the corpus from opening;
a part (a replay cache, derived data, the labels) is left out, whole or file by file, and reported. Every view
always exists: a part without data shows the same columns with no rows, and derived data that is stale or damaged
is computed from the corpus by the same SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from horizonlens.corpus.files import validate_file
from horizonlens.corpus.schema import TABLES
from horizonlens.derived.spec import REBUILD, DerivedSpec, built_from
from horizonlens.errors import CorpusError
from horizonlens.labels.annotations import ANNOTATIONS, CURRENT_VIEW, HISTORY_VIEW, LABELS_TABLE, current_view_sql
from horizonlens.replays.layout import CACHE_TABLES, TOKEN_TABLES
from horizonlens.replays.views import REPLAY_VIEWS, replay_selects
from horizonlens.storage.dataset import Dataset, Snapshot
from horizonlens.storage.location import CorpusPath, read_schema
from horizonlens.storage.manifest import DataFile
from horizonlens.storage.quoting import quote_ident, sql_string
from horizonlens.storage.scan import FileScans, empty_relation, hive_keys


def stamp(path: CorpusPath) -> Any:
    """What tells a manifest changed without reading it: (mtime, size, inode), or None if it is not there."""
    try:
        st = path.stat()
    except (OSError, CorpusError):
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Views:
    """Creates views on the store's connection: over a table's files, or empty with the columns of a schema."""

    def __init__(self, con: duckdb.DuckDBPyConnection, scans: FileScans):
        self.con = con
        self.scans = scans

    def files(self, key: str, paths: Sequence[CorpusPath], union: bool = True) -> str:
        """A FROM clause scanning these files (`key` names them for the registered datasets of object storage)."""
        return self.scans.relation(self.con, key, list(paths), union)

    def empty(self, schema: pa.Schema) -> str:
        """A FROM clause with the columns of `schema` and no rows, for a view whose dataset has no files."""
        return empty_relation(schema)

    def create(self, name: str, sql: str) -> None:
        """Create or replace one view (a table of that name, say aggregates computed in memory, is dropped first)."""
        self.drop(name, keep_views=True)
        self.con.execute(f"CREATE OR REPLACE VIEW {quote_ident(name)} AS {sql}")

    def drop(self, name: str, keep_views: bool = False) -> None:
        """Drop a view or table of this connection by name, whichever it is (`keep_views`: tables only)."""
        kinds = self.con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = ?",
                                 [name]).fetchall()
        for (kind,) in kinds:
            if kind != "VIEW" or not keep_views:
                self.con.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} IF EXISTS {quote_ident(name)}")


class Mount:
    """One dataset of the corpus as views: its published state, the files that passed the checks, its problems."""

    part = "dataset"  # what the user reads in a problem: "left out of the <part>"
    required = False  # the corpus tables: a problem stops the corpus from opening
    whole = False  # all files or none (derived data: some of its files would give wrong answers)
    fix = ""  # what the user can do about a problem, appended to it
    missing_ok = True  # a dataset without a manifest reads as empty

    def __init__(self, dataset: Dataset, key: str, schemas: dict[str, pa.Schema] | None = None):
        self.dataset = dataset
        self.key = key  # its name in the store's version
        self.schemas = schemas or {}
        self.stamp: Any = None
        self.snapshot: Snapshot | None = None  # None: nothing mounted (absent, stale or damaged)
        self.files: dict[str, list[DataFile]] = {}  # per table, the files that passed the checks
        self.problems: list[str] = []

    @property
    def fingerprint(self) -> str | None:
        """Identifies the state the views show (None when nothing is mounted)."""
        return self.snapshot.fingerprint if self.snapshot is not None else None

    def changed(self) -> bool:
        """Whether the manifest changed since it was loaded (one stat)."""
        return stamp(self.dataset.manifest_path) != self.stamp

    def usable(self, snapshot: Snapshot) -> bool:
        """Whether this state is one to mount at all (derived data: built from the corpus as it is now)."""
        return True

    def load(self) -> None:
        """Read the published state and check every listed file: the one way problems are collected."""
        self.stamp = stamp(self.dataset.manifest_path)
        self.snapshot, self.files, self.problems = None, {}, []
        try:
            snap = self.dataset.snapshot(missing_ok=self.missing_ok)
        except CorpusError as exc:
            self._problem(str(exc))
            return
        if not self.usable(snap):
            return
        files: dict[str, list[DataFile]] = {}
        for entry in snap.files:
            try:
                validate_file(snap.root / entry.path, self.schemas.get(entry.table), entry.bytes)
            except CorpusError as exc:
                self._problem(str(exc))
                continue
            files.setdefault(entry.table, []).append(entry)
        if self.problems and self.whole:
            return
        self.snapshot, self.files = snap, files

    def _problem(self, text: str) -> None:
        if self.required:
            raise CorpusError(text)
        self.problems.append(f"left out of the {self.part}: {text}{self.fix}")

    def paths(self, table: str) -> list[CorpusPath]:
        """The checked files of one table."""
        return [self.dataset.root / f.path for f in self.files.get(table, [])]


class CorpusMount(Mount):
    """The corpus tables `trajectories` and `steps`."""

    part = "corpus"
    required = True
    missing_ok = False

    def __init__(self, dataset: Dataset):
        super().__init__(dataset, "corpus", TABLES)
        self.partitions: dict[str, list[str]] = {}  # hive partition keys per table: lookups can prune them

    def create_views(self, views: Views) -> None:
        """The views `trajectories` and `steps`."""
        for name, schema in TABLES.items():
            paths = self.paths(name)
            keys = hive_keys([p.as_posix() for p in paths])
            if keys:
                self.partitions[name] = keys
            else:
                self.partitions.pop(name, None)
            # union_by_name makes DuckDB read every file's schema on every query; it is needed only when the
            # files differ in columns or column order
            union = len({read_schema(p).remove_metadata().to_string() for p in paths}) > 1
            views.create(name, f"SELECT * FROM {views.files(name, paths, union)}" if paths
                         else f"SELECT * FROM {views.empty(schema)}")


class DerivedMount(Mount):
    """Derived data (the search index, the aggregates): its views over its files while it matches the corpus."""

    whole = True
    fix = f"; the views are computed from the corpus until `{REBUILD}` rebuilds it"

    def __init__(self, spec: DerivedSpec, corpus: CorpusMount):
        super().__init__(spec.dataset(corpus.dataset.root), spec.folder)
        self.spec = spec
        self.part = spec.kind
        self.corpus = corpus

    def usable(self, snapshot: Snapshot) -> bool:
        """Built from the corpus as it is now, by the current definitions (else stale: not a problem)."""
        return self.corpus.snapshot is not None and built_from(self.spec, snapshot, self.corpus.snapshot)

    def create_views(self, views: Views) -> None:
        """Each view over its files, or computed from the corpus when the files are stale or damaged."""
        fallback = self.spec.fallback_sql()
        for view in self.spec.views():
            tables = [t.name for t in self.spec.outputs if t.view == view]
            paths = [p for t in tables for p in self.paths(t)]
            views.scans.forget(views.con, view)
            if self.snapshot is not None and paths:
                views.create(view, f"SELECT * FROM {views.files(view, paths, union=False)}")
            else:
                views.create(view, fallback[view])


class ReplayMount(Mount):
    """One checkpoint's replay cache (its rollouts included)."""

    part = "replay views"
    fix = "; its trajectories are replayed again on demand"

    def __init__(self, dataset: Dataset, checkpoint_id: str):
        super().__init__(dataset, f"replay:{checkpoint_id}", CACHE_TABLES)
        self.checkpoint_id = checkpoint_id

    @property
    def replayed(self) -> bool:
        """Whether any replay of this checkpoint is mounted."""
        return bool(self.files.get("steps"))

    def selects(self, views: Views) -> dict[str, list[str]]:
        """Per replay view, this checkpoint's SELECTs (each with its checkpoint_id)."""
        groups: dict[str, dict[int, list[DataFile]]] = {}
        for table, entries in self.files.items():
            for e in entries:
                k = int(e.meta.get("top_k", 0)) if table in TOKEN_TABLES else 0
                if table not in TOKEN_TABLES or k:  # a token file without rows has no experts to decode
                    groups.setdefault(table, {}).setdefault(k, []).append(e)
        ckpt = self.checkpoint_id

        def relation(table: str, key: str, k: int) -> str:
            return views.files(f"replay_{key}_{ckpt}", [self.dataset.root / e.path for e in groups[table][k]])

        selects = replay_selects({t: sorted(g) for t, g in groups.items()}, relation)
        return {view: [f"SELECT *, {sql_string(ckpt)} AS checkpoint_id FROM ({q})" for q in qs]
                for view, qs in selects.items()}


def create_replay_views(views: Views, mounts: Sequence[ReplayMount]) -> None:
    """The replay views over every checkpoint's cache; a view no checkpoint fills is empty, with its columns."""
    views.scans.forget(views.con, "replay_")
    parts: dict[str, list[str]] = {view: [] for view in REPLAY_VIEWS}
    for mount in mounts:
        for view, selects in mount.selects(views).items():
            parts[view] += selects
    empty = replay_selects({t: [1] if t in TOKEN_TABLES else [0] for t in CACHE_TABLES},
                           lambda table, key, k: views.empty(CACHE_TABLES[table]))
    for view, selects in parts.items():
        if not selects:
            selects = [f"SELECT *, CAST(NULL AS VARCHAR) AS checkpoint_id FROM ({q})" for q in empty[view]]
        views.create(view, " UNION ALL BY NAME ".join(selects))


class AnnotationsMount(Mount):
    """The labels: `annotation_history` (every version) and `annotations` (the current labels)."""

    part = "labels"

    def __init__(self, dataset: Dataset):
        super().__init__(dataset, "annotations", {LABELS_TABLE: ANNOTATIONS})

    def create_views(self, views: Views) -> None:
        """Both views, empty without labels."""
        paths = self.paths(LABELS_TABLE)
        views.scans.forget(views.con, "annotations")
        history = views.files("annotations", paths) if paths else views.empty(ANNOTATIONS)
        views.create(HISTORY_VIEW, f"SELECT * FROM {history}")
        views.create(CURRENT_VIEW, current_view_sql())
