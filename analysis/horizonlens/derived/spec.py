"""Derived datasets: tables computed from a source dataset and kept up to date file by file.

The corpus aggregates (derived/aggregates.py) and the search index (derived/search_index.py) are derived datasets,
each a `Dataset` of its own in a folder next to its source's tables, declared as a `DerivedSpec`: `DerivedTable`s
that each turn a *unit* of one source table (a few of its files) into rows, by an SQL SELECT over `{src}` or a
writer function, and `Rollup`s recomputed whole from them. The manifest records the source state it was brought
up to date at (`built_from`), a hash of the definitions (`definition`) and, per file, the source files it came
from (`meta.sources`).

`update()` brings a derived dataset up to date in one transaction: derived files whose sources are all still
published are kept, the rest dropped, and only uncovered source files are computed, in units of bounded size. A
table that must hold one row per key is checked after each update and rebuilt as one unit if a key spans two
units. Damaged derived data (a bad manifest, a truncated file) is built again from nothing. Readers that find it
stale or damaged compute the same views from the source with `fallback_sql()` (docs/corpus-format.md).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from horizonlens.errors import CorpusError
from horizonlens.storage.dataset import Dataset, Snapshot, Transaction
from horizonlens.storage.grouped import write_grouped
from horizonlens.storage.location import CorpusPath, as_location
from horizonlens.storage.manifest import DataFile, ManifestRules, string_list
from horizonlens.storage.quoting import quote_ident, sql_string
from horizonlens.storage.scan import FileScans

REBUILD = "horizonlens index CORPUS"  # the command that builds derived data again

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
    options: str = ""  # more Parquet COPY options, e.g. "PARQUET_VERSION V2" (how rows are stored, not what)
    # > 0: row groups hold at most this many elements of the list columns as well (storage/grouped.py), so that
    # a lookup by key decodes little beside the key's own list
    list_budget: int = 0
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

    Its SQL reads views named after the derived tables (e.g. `agg_trajectories`) or after their reader views (the
    union of the tables that share one), and after the source dataset's tables (e.g. `trajectories`). Use it for
    tables that combine several source tables or roll many units up into a few rows (a cube of per-facet sums), so
    that a reader needs neither a join nor a scan.
    """

    name: str
    sql: str
    view: str | None = None
    doc: str = ""

    @property
    def definition(self) -> str:
        """What the table's rows mean."""
        return f"rollup|{self.name}|{self.sql}"


def _check_entry(entry: DataFile, manifest: dict[str, Any], where: str) -> None:
    string_list(entry.meta.get("sources", []), "'meta.sources'", f"{where}: {entry.path}")


DERIVED_RULES = ManifestRules(kind="derived data", upgrade=REBUILD, entry=_check_entry)


@dataclass(frozen=True)
class DerivedSpec:
    """A derived dataset: where it lives (relative to its source's root), what it holds."""

    folder: str
    kind: str
    tables: tuple[DerivedTable, ...]
    # per source table, temp tables computed in order once per unit before its tables are written, each
    # (name, SELECT over `{src}` and the temp tables before it), so that several derived tables share one pass
    prepare: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    rollups: tuple[Rollup, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # manifest keys recorded at each update
    # tables an older format had: a manifest listing one is read as too old (rebuilt by REBUILD), not as damaged
    retired: tuple[str, ...] = ()

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
        for source in sorted(self.prepare):
            h.update(f"{source}|{self.prepare_sql(source)}".encode())
        return h.hexdigest()[:16]

    def prepare_sql(self, source: str) -> list[str]:
        """The statements that make one unit's temp tables of `source` (none: the tables read `{src}` alone)."""
        return [f"CREATE OR REPLACE TEMP TABLE {name} AS\n{select.format(src='src')}"
                for name, select in self.prepare.get(source, ())]

    def views(self) -> dict[str, str]:
        """The views readers query, each with what it holds."""
        out: dict[str, str] = {}
        for t in self.outputs:
            if t.view:
                out[t.view] = out.get(t.view) or t.doc
        return out

    def fallback_sql(self, sources: dict[str, str] | None = None) -> dict[str, str]:
        """Per view, a SELECT computing it from the source views instead of the derived files, in dependency order.

        What a reader uses while the derived data is stale or damaged: the same SQL, over the whole source table
        (`sources` renames the source tables' views; by default they are named like the tables).
        """
        parts: dict[str, list[str]] = {}
        for t in self.tables:
            if t.view and t.sql is not None:
                src = (sources or {}).get(t.source, t.source)
                prep = self.prepare.get(t.source, ())
                sql = t.sql.format(src=src)
                if prep:
                    ctes = ", ".join(f"{name} AS ({select.format(src=src)})" for name, select in prep)
                    sql = f"WITH {ctes} {sql}"
                parts.setdefault(t.view, []).append(sql)
        for r in self.rollups:
            if r.view:
                parts.setdefault(r.view, []).append(r.sql)
        return {view: sqls[0] if len(sqls) == 1 else " UNION ALL BY NAME ".join(f"SELECT * FROM ({q})" for q in sqls)
                for view, sqls in parts.items()}

    def dataset(self, source_root: CorpusPath | str) -> Dataset:
        """The derived dataset of a source dataset rooted at `source_root`."""
        return Dataset(as_location(source_root) / self.folder, tuple(t.name for t in self.outputs),
                       rules=self.rules)

    @property
    def rules(self) -> ManifestRules:
        """The manifest checks: those of all derived data, and the retired tables named as an older format."""
        if not self.retired:
            return DERIVED_RULES
        retired, kind = set(self.retired), self.kind

        def check(manifest: dict[str, Any], where: str) -> None:
            found = sorted({str(f.get("table")) for f in manifest.get("files") or [] if isinstance(f, dict)} & retired)
            if found:
                raise DERIVED_RULES.too_old(where, f"a {kind} in an older format (with table(s) {', '.join(found)})")

        return ManifestRules(kind=DERIVED_RULES.kind, upgrade=REBUILD, entry=_check_entry, check=check)

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
    """Identifies one published source file: path, size and checksum (or modification time without one)."""
    stamp = f.sha256
    if not stamp:
        try:
            stamp = str((snapshot.root / f.path).stat().st_mtime_ns)
        except OSError:
            stamp = "missing"
    return f"{f.path}|{f.bytes}|{stamp}"


def built_from(spec: DerivedSpec, built: Snapshot, source: Snapshot) -> bool:
    """Whether this state of the derived dataset was brought up to date at `source`, by these definitions."""
    return (built.manifest.get("built_from") == source.fingerprint
            and built.manifest.get("definition") == spec.definition)


def is_fresh(spec: DerivedSpec, source: Snapshot) -> bool:
    """The derived dataset exists, was brought up to date at this source state, and by these definitions."""
    target = spec.dataset(source.root)
    if not target.exists():
        return False
    try:
        return built_from(spec, target.snapshot(), source)
    except CorpusError:
        return False


@contextmanager
def _transaction(target: Dataset, kind: str) -> Iterator[tuple[Transaction, bool]]:
    """A transaction on the derived dataset, and whether it starts from nothing because the old one was damaged."""
    try:
        snap = target.snapshot(missing_ok=True)
        damaged = any(not _intact(target.root, f) for f in snap.files)
    except CorpusError:  # a manifest that cannot be read: the files it listed are unknown, so start over
        with target.upgrade(create={"kind": kind}, start_over=True) as (txn, _):
            yield txn, True
        return
    with target.transaction(create={"kind": kind}) as txn:
        yield txn, damaged


def _intact(root: CorpusPath, f: DataFile) -> bool:
    """Whether a derived file is there with the size it was written with."""
    try:
        return (root / f.path).stat().st_size == f.bytes
    except (OSError, CorpusError):
        return False


def update(spec: DerivedSpec, source: Dataset, full: bool = False, threads: int | None = None,
           memory_limit: str | None = None, log: Callable[[str], None] = lambda s: None) -> UpdateReport:
    """Bring the derived dataset of `source` up to date (see the module docstring); `full` recomputes all."""
    started = time.perf_counter()
    report = UpdateReport()
    target = spec.dataset(source.root)
    with _transaction(target, spec.kind) as (txn, damaged):
        snap = source.snapshot()
        rebuild = full or damaged or txn.snapshot.manifest.get("definition") != spec.definition
        con = duckdb.connect(":memory:")
        try:
            con.execute("SET enable_progress_bar = false")
            if threads:
                con.execute(f"SET threads = {int(threads)}")
            if memory_limit:
                con.execute(f"SET memory_limit = {sql_string(memory_limit)}")
            for name in dict.fromkeys(t.source for t in spec.tables):
                _update_source(con, spec, name, snap, txn, rebuild, report, log)
            current = built_from(spec, txn.snapshot, snap) and not damaged
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
    by_view: dict[str, list[CorpusPath]] = {}
    for table in spec.tables:
        paths = [txn.dataset.root / f.path for f in files if f.table == table.name]
        if table.suffix == ".parquet" and paths:
            con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(table.name)} AS SELECT * FROM "
                        f"{_scan(con, f'derived_{table.name}', paths)}")
            if table.view and table.view != table.name:
                by_view.setdefault(table.view, []).extend(paths)
    for view, paths in by_view.items():  # the views readers see, so that a rollup reads the same in both places
        con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(view)} AS SELECT * FROM "
                    f"{_scan(con, f'derived_view_{view}', paths)}")
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
        weight = f.rows / UNIT_ROWS
        if units and size + weight <= 1:
            units[-1].append(f)
            size += weight
        else:
            units.append([f])
            size = weight
    return units


def unit_id(snap: Snapshot, unit: Sequence[DataFile]) -> int:
    """A number naming one unit of source files (63 bits of a hash of their keys).

    Derived rows that refer to each other across the tables of one unit (say, document numbers local to the unit)
    carry it as SQL `getvariable('derived_unit')`, which is NULL where the views are computed from the source.
    """
    digest = hashlib.sha256("\n".join(source_key(snap, f) for f in unit).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _write_unit(con: duckdb.DuckDBPyConnection, spec: DerivedSpec, tables: list[DerivedTable], snap: Snapshot,
                unit: list[DataFile], txn: Transaction) -> list[Path]:
    """Compute one unit into reserved (not yet registered) paths, one per table, in table order."""
    source = tables[0].source
    written: list[Path] = []
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW src AS SELECT * FROM "
                    f"{_scan(con, 'unit', [snap.root / f.path for f in unit])}")
        con.execute("SET VARIABLE derived_unit = ?", [unit_id(snap, unit)])
        for statement in spec.prepare_sql(source):
            con.execute(statement)
        for table in tables:
            target = txn.reserve(table.name, suffix=table.suffix)
            written.append(target)
            if table.sql is not None and table.list_budget:
                write_grouped(con.sql(table.sql.format(src="src")).to_arrow_reader(65_536), target,
                              table.row_group_size, table.list_budget)
            elif table.sql is not None:
                options = f", {table.options}" if table.options else ""
                con.execute(f"COPY ({table.sql.format(src='src')}) TO {sql_string(str(target))} "
                            f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {int(table.row_group_size)}{options})")
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
