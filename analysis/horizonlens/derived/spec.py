"""Derived datasets: tables computed from a source dataset and kept up to date file by file.

The corpus aggregates (`corpus/aggregates.py`) and the search indexes (`corpus/search_index.py`) are derived
datasets; a replay cache's routing aggregates can be one too. Each is a `Dataset` of its own, in a folder next to
its source's tables, declared as a `DerivedSpec`: a list of `DerivedTable`s, each naming the source table it reads
and how a *unit* of that table (a few of its Parquet files) becomes rows, either an SQL SELECT over `{src}` or a
writer function. Its manifest records

- `built_from`: the source dataset's fingerprint when it was last brought up to date (stale once the source
  commits again);
- `definition`: a hash of the table definitions (stale once the code that derives them changes);
- for every derived file, `meta.sources`: the source files (path, size, checksum) it was computed from.

`update()` brings a derived dataset up to date incrementally, in one transaction: a derived file whose source
files are all still published is kept, any other is dropped, and the source files no kept file covers are
computed in units of bounded size. An import that adds one file costs one unit; a replace that rewrites a file
costs the unit that held it. A table that must hold one row per key (one row per trajectory, from window
functions over its steps) is checked after each update; if some trajectory's rows span two units (possible in a
corpus written by hand), that table is rebuilt as one unit.

The API, as the corpus aggregates use it:

    SPEC = DerivedSpec("aggregates", kind="corpus aggregates", tables=(
        DerivedTable("agg_trajectories", source="steps", sql="SELECT trajectory_id, ... FROM {src} GROUP BY 1",
                     unique_key=("trajectory_id",)),))
    update(SPEC, corpus_dataset(root))     # build, or bring up to date (under the derived dataset's lock)
    is_fresh(SPEC, corpus_snapshot)        # built from exactly this source state, with these definitions?
    SPEC.dataset(root).snapshot().paths("agg_trajectories")   # the files a reader opens

A routing aggregate would be declared the same way with `source="routing"` and updated against a checkpoint's
replay dataset (`corpus.layout.replay_dataset`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from horizonlens.errors import CorpusError
from horizonlens.storage.dataset import DataFile, Dataset, Snapshot, Transaction
from horizonlens.storage.location import CorpusPath, as_location, read_metadata
from horizonlens.storage.quoting import quote_ident, sql_string
from horizonlens.storage.scan import FileScans

# A unit is at most this many source rows (a bigger file is a unit of its own): small enough
# that a window pass over one unit stays well inside memory, large enough that a 1M-trajectory corpus has tens
# of derived files, not thousands.
UNIT_ROWS = 2_000_000

# A custom writer gets a DuckDB connection on which `src` is a view of the unit's source rows, and the path to
# write (a reserved dataset path with the table's suffix).
Writer = Callable[[duckdb.DuckDBPyConnection, Path], None]


@dataclass(frozen=True)
class DerivedTable:
    """One table of a derived dataset: rows computed unit by unit from one table of the source dataset."""

    name: str  # the table's folder in the derived dataset (and, with `view`, the name readers query)
    source: str  # the source dataset's table it reads, e.g. "steps"
    sql: str | None = None  # a SELECT over `{src}` (one unit's rows); DuckDB writes its result as Parquet
    writer: Writer | None = None  # or a function that writes the file itself (e.g. Arrow IPC)
    suffix: str = ".parquet"
    # columns whose values must be unique over the whole table (checked after updates): rows per trajectory that
    # a window pass computes are only right if no trajectory's source rows span two units
    unique_key: tuple[str, ...] = ()
    view: str | None = None  # the DuckDB view name the store gives this table (None: not a SQL table)
    row_group_size: int = 65_536
    doc: str = ""
    revision: int = 1  # bump when `writer` changes meaning (SQL definitions are hashed as they are)

    def __post_init__(self) -> None:
        if (self.sql is None) == (self.writer is None):
            raise ValueError(f"derived table {self.name!r}: give exactly one of sql and writer")

    @property
    def definition(self) -> str:
        """What the table's rows mean: its SQL, or its writer's qualified name and revision."""
        if self.sql is not None:
            return f"{self.name}|{self.source}|{self.sql}|{self.revision}"
        assert self.writer is not None
        return f"{self.name}|{self.source}|{self.writer.__module__}.{self.writer.__qualname__}|{self.revision}"


@dataclass(frozen=True)
class Rollup:
    """A small summary table recomputed whole at every update, from the derived tables and the source tables.

    Its SQL reads views named after the derived tables (e.g. `agg_trajectories`) and after the source dataset's
    tables (e.g. `trajectories`). Use it for tables that combine several source tables or roll many units up
    into a few rows (a cube of per-facet sums), so that a reader needs neither a join nor a scan.
    """

    name: str
    sql: str
    view: str | None = None
    doc: str = ""

    @property
    def definition(self) -> str:
        """What the table's rows mean."""
        return f"rollup|{self.name}|{self.sql}"


@dataclass(frozen=True)
class DerivedSpec:
    """A derived dataset: where it lives (relative to its source's root), what it holds."""

    folder: str
    kind: str
    tables: tuple[DerivedTable, ...]
    # per source table, SQL run once per unit before its tables are written (e.g. a temp table that several
    # derived tables read, so the unit's rows are tokenised once)
    prepare: dict[str, str] = field(default_factory=dict)
    rollups: tuple[Rollup, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # manifest keys recorded at each update

    @property
    def outputs(self) -> tuple[DerivedTable | Rollup, ...]:
        """Every table of the derived dataset: the per-unit tables, then the rollups."""
        return (*self.tables, *self.rollups)

    @property
    def definition(self) -> str:
        """A hash of every table definition: a derived dataset built by other definitions is stale."""
        h = hashlib.sha256()
        for table in self.outputs:
            h.update(table.definition.encode())
        for source, sql in sorted(self.prepare.items()):
            h.update(f"{source}|{sql}".encode())
        return h.hexdigest()[:16]

    def dataset(self, source_root: CorpusPath | str) -> Dataset:
        """The derived dataset of a source dataset rooted at `source_root`."""
        return Dataset(as_location(source_root) / self.folder, tuple(t.name for t in self.outputs))

    def table(self, name: str) -> DerivedTable:
        """One table's definition by name."""
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)


@dataclass
class UpdateReport:
    """What an update did, per table: source files computed, derived files kept and dropped."""

    computed: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    rebuilt_whole: list[str] = field(default_factory=list)  # tables rebuilt as one unit after a key split
    seconds: float = 0.0
    manifest: dict[str, Any] = field(default_factory=dict)


def source_key(snapshot: Snapshot, f: DataFile) -> str:
    """Identifies one published source file: path, size and checksum (or modification time when unlisted)."""
    stamp = f.sha256
    if not stamp:
        try:
            stamp = str((snapshot.root / f.path).stat().st_mtime_ns)
        except OSError:
            stamp = "missing"
    return f"{f.path}|{f.bytes}|{stamp}"


def is_fresh(spec: DerivedSpec, source: Snapshot) -> bool:
    """The derived dataset exists, was brought up to date at this source state, and by these definitions."""
    target = spec.dataset(source.root)
    if not target.exists():
        return False
    try:
        built = target.snapshot()
    except CorpusError:
        return False
    return (built.manifest.get("built_from") == source.fingerprint
            and built.manifest.get("definition") == spec.definition)


def update(spec: DerivedSpec, source: Dataset, full: bool = False, threads: int | None = None,
           memory_limit: str | None = None, log: Callable[[str], None] = lambda s: None) -> UpdateReport:
    """Bring the derived dataset of `source` up to date (see the module docstring); `full` recomputes all."""
    started = time.perf_counter()
    report = UpdateReport()
    target = spec.dataset(source.root)
    with target.transaction(create={"kind": spec.kind}) as txn:
        snap = source.snapshot()
        rebuild = full or txn.snapshot.manifest.get("definition") != spec.definition
        con = duckdb.connect(":memory:")
        try:
            con.execute("SET enable_progress_bar = false")
            if threads:
                con.execute(f"SET threads = {int(threads)}")
            if memory_limit:
                con.execute(f"SET memory_limit = {sql_string(memory_limit)}")
            for name in dict.fromkeys(t.source for t in spec.tables):
                _update_source(con, spec, name, snap, txn, rebuild, report, log)
            current = (txn.snapshot.manifest.get("built_from") == snap.fingerprint
                       and txn.snapshot.manifest.get("definition") == spec.definition)
            missing = any(not txn.snapshot.table(r.name) for r in spec.rollups)
            if txn.added or txn.removed or not current or missing:
                _write_rollups(con, spec, snap, txn, log)
        finally:
            con.close()
        if not (txn.added or txn.removed) and current:
            report.manifest = txn.snapshot.manifest  # already up to date: no new version for readers to reload
            report.seconds = time.perf_counter() - started
            return report
        txn.update(built_from=snap.fingerprint, definition=spec.definition, kind=spec.kind,
                   build_s=round(time.perf_counter() - started, 2),
                   rows={t.name: sum(f.rows for f in txn.files() if f.table == t.name) for t in spec.outputs},
                   **spec.extra)
        report.manifest = txn.commit().manifest
    report.seconds = time.perf_counter() - started
    return report


def _update_source(con: duckdb.DuckDBPyConnection, spec: DerivedSpec, source: str, snap: Snapshot,
                   txn: Transaction, rebuild: bool, report: UpdateReport, log: Callable[[str], None]) -> None:
    """Update every derived table of one source table; they share units, so they always cover the same files."""
    tables = [t for t in spec.tables if t.source == source]
    files = snap.table(source)
    keys = {source_key(snap, f): f for f in files}
    existing = {t.name: txn.snapshot.table(t.name) for t in tables}
    kept = {name: [] if rebuild else [d for d in found if set(d.meta.get("sources") or []) <= keys.keys()]
            for name, found in existing.items()}
    coverage = [frozenset(k for d in kept[t.name] for k in d.meta.get("sources") or []) for t in tables]
    if len(set(coverage)) > 1:  # the tables disagree about what they cover (not written by this code): start over
        kept = {name: [] for name in kept}
        coverage = [frozenset()]
    todo = [f for k, f in keys.items() if k not in coverage[0]]
    for t in tables:
        txn.remove([d for d in existing[t.name] if d not in kept[t.name]])
        report.kept[t.name] = len(kept[t.name])
        report.dropped[t.name] = len(existing[t.name]) - len(kept[t.name])
        report.computed[t.name] = len(todo)
    written: list[tuple[DerivedTable, Path, list[DataFile]]] = []
    try:
        for unit in _units(snap, todo):
            log(f"  {source}: {len(unit)} file(s) -> {', '.join(t.name for t in tables)}")
            written += [(t, path, unit) for t, path in zip(tables, _write_unit(con, spec, tables, snap, unit, txn),
                                                            strict=True)]
        split = [t.name for t in tables if t.unique_key and _has_duplicate_keys(
            con, t.unique_key, [txn.dataset.root / d.path for d in kept[t.name]], [p for w, p, _ in written if w is t])
        ] if written else []
        if split:
            # some trajectory's rows span two units, so the per-unit rows are partial: compute it all as one unit
            for _, path, _ in written:
                path.unlink(missing_ok=True)
            for t in tables:
                txn.remove(kept[t.name])
            report.rebuilt_whole += split
            written = [(t, path, list(files)) for t, path in zip(
                tables, _write_unit(con, spec, tables, snap, list(files), txn), strict=True)]
    except BaseException:
        for _, path, _ in written:
            path.unlink(missing_ok=True)
        raise
    for t, path, unit in written:
        txn.register(t.name, path, meta={"sources": [source_key(snap, f) for f in unit]})


def _write_rollups(con: duckdb.DuckDBPyConnection, spec: DerivedSpec, snap: Snapshot, txn: Transaction,
                   log: Callable[[str], None]) -> None:
    """Recompute every rollup from the derived tables as they will be published and the source tables."""
    if not spec.rollups:
        return
    files = txn.files()
    for table in spec.tables:
        paths = [txn.dataset.root / f.path for f in files if f.table == table.name]
        if table.suffix == ".parquet" and paths:
            con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(table.name)} AS SELECT * FROM "
                        f"{_scan(con, f'derived_{table.name}', paths)}")
    for name in dict.fromkeys(f.table for f in snap.files):
        con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS SELECT * FROM "
                    f"{_scan(con, f'source_{name}', snap.paths(name))}")
    for rollup in spec.rollups:
        log(f"  {rollup.name}")
        target = txn.reserve(rollup.name)
        try:
            con.execute(f"COPY ({rollup.sql}) TO {sql_string(str(target))} (FORMAT parquet, COMPRESSION zstd)")
        except duckdb.Error as exc:
            target.unlink(missing_ok=True)
            raise CorpusError(f"{txn.dataset.root}: cannot compute {rollup.name} ({exc})") from exc
        txn.remove(txn.snapshot.table(rollup.name))
        txn.register(rollup.name, target)


def _units(snap: Snapshot, files: Sequence[DataFile]) -> list[list[DataFile]]:
    """Consecutive source files grouped into units of at most UNIT_ROWS rows (a bigger file is a unit alone)."""
    units: list[list[DataFile]] = []
    size = 0.0
    for f in files:
        weight = _rows(snap, f) / UNIT_ROWS
        if units and size + weight <= 1:
            units[-1].append(f)
            size += weight
        else:
            units.append([f])
            size = weight
    return units


def _rows(snap: Snapshot, f: DataFile) -> int:
    """A source file's row count: from the manifest, or from its footer for a corpus listed by folder."""
    if f.rows >= 0:
        return f.rows
    try:
        return int(read_metadata(snap.root / f.path).num_rows)
    except (OSError, pa.ArrowException, CorpusError):
        return UNIT_ROWS  # unreadable: a unit of its own; computing it reports the problem


def _write_unit(con: duckdb.DuckDBPyConnection, spec: DerivedSpec, tables: list[DerivedTable], snap: Snapshot,
                unit: list[DataFile], txn: Transaction) -> list[Path]:
    """Compute one unit into reserved (not yet registered) paths, one per table, in table order."""
    source = tables[0].source
    written: list[Path] = []
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW src AS SELECT * FROM "
                    f"{_scan(con, 'unit', [snap.root / f.path for f in unit])}")
        if spec.prepare.get(source):
            con.execute(spec.prepare[source])
        for table in tables:
            target = txn.reserve(table.name, suffix=table.suffix)
            written.append(target)
            if table.sql is not None:
                con.execute(f"COPY ({table.sql.format(src='src')}) TO {sql_string(str(target))} "
                            f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {int(table.row_group_size)})")
            else:
                assert table.writer is not None
                table.writer(con, target)
    except (duckdb.Error, OSError) as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise CorpusError(f"{txn.dataset.root}: cannot compute {', '.join(t.name for t in tables)} from "
                          f"{len(unit)} file(s) of {source} ({exc})") from exc
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def _has_duplicate_keys(con: duckdb.DuckDBPyConnection, key: tuple[str, ...], kept: list[CorpusPath],
                        written: list[Path]) -> bool:
    """Whether some combination of the `key` columns occurs in more than one row of these Parquet files.

    `kept`: published derived files (in object storage for a corpus there); `written`: this update's local files.
    """
    cols = ", ".join(quote_ident(k) for k in key)
    parts = [f"SELECT {cols} FROM {_scan(con, name, paths)}"
             for name, paths in (("dup_kept", kept), ("dup_written", list(written))) if paths]
    if not parts:
        return False
    dup = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM ({' UNION ALL '.join(parts)}) "
                      f"GROUP BY ALL HAVING count(*) > 1 LIMIT 1)").fetchall()[0][0]
    return bool(dup)


def _scan(con: duckdb.DuckDBPyConnection, name: str, paths: Sequence[CorpusPath]) -> str:
    """A FROM clause over Parquet files: `read_parquet` for local files, a registered dataset in object storage.

    Columns are matched by name (files written at different times may differ in optional columns) and folder
    names are not read as partition columns, so a derived table sees exactly the columns its files hold.
    """
    return FileScans(paths[0]).relation(con, name, list(paths), union=True, hive=False)


def relation_sql(spec: DerivedSpec, name: str, source: str) -> str:
    """A derived table's SELECT with `{src}` bound to a relation of the source table (e.g. the `steps` view).

    The store uses this to compute an aggregate from the corpus when the derived dataset is stale: the same
    SQL, over the whole table instead of one unit.
    """
    table = spec.table(name)
    if table.sql is None:
        raise ValueError(f"derived table {name!r} is written by a function, not SQL")
    return table.sql.format(src=source)
