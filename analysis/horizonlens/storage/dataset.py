"""Datasets: a folder of Parquet files whose published state is one manifest, switched atomically.

Every writable part of a corpus is a dataset: the corpus itself (tables `trajectories` and `steps`), each
checkpoint's replay cache, the annotations, the derived data. A dataset's `manifest.json` lists the files of each
table with their row count, size and checksum, and a version that grows by one per commit. Readers read the
manifest (never the folder), checked by the one manifest validator (storage/manifest.py), and so see either the
old or the new state, never a half.

Writers go through a `Transaction`, held under the dataset's lock (storage/lock.py) from start to commit:

1. on entry, leftovers of a crashed writer are deleted (files named like the writers' own that the manifest does
   not list; files put there by hand are never touched);
2. `write()` (or `reserve()` + `register()`) adds new files; they are invisible until the commit;
3. `commit()` writes the new manifest atomically (the switch), then deletes the files the commit removed.

A crash before the switch leaves the old state plus unlisted files; a crash after it leaves the new state plus
files; the next writer deletes either kind, so readers never see a partial commit.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from horizonlens.errors import CorpusError
from horizonlens.storage import atomic
from horizonlens.storage.access import Permission, require
from horizonlens.storage.location import CorpusPath, ObjectPath, as_location, read_metadata
from horizonlens.storage.lock import ObjectLock, writer_lock
from horizonlens.storage.manifest import MANIFEST, DataFile, ManifestRules, check_path, read_json, validate

# Files the dataset writers make: only these (and temporary names) are ever deleted as leftovers. Tables are
# Parquet; a derived dataset may also hold Arrow IPC files (.arrow), which can be memory-mapped.
OWN_FILE = re.compile(r"^(hl-[0-9a-f]{12}-\d{5}\.(parquet|arrow)|" + re.escape(atomic.TMP_PREFIX) + ".*)$")
SUFFIXES = (".parquet", ".arrow")
DEFAULT_LOCK_TIMEOUT_S = 600.0
DEFAULT_RULES = ManifestRules()


@dataclass(frozen=True)
class Snapshot:
    """A dataset as of one version of its manifest: what readers query."""

    root: CorpusPath
    manifest: dict[str, Any]
    files: tuple[DataFile, ...]

    @property
    def version(self) -> int:
        """Grows by one with every commit (0 for a dataset never committed to)."""
        return int(self.manifest.get("version") or 0)

    @property
    def fingerprint(self) -> str:
        """Identifies this state: derived data (indexes, aggregates) built from it stays valid while it holds."""
        return f"{self.manifest.get('dataset_id', '')}:{self.version}"

    def table(self, name: str) -> list[DataFile]:
        """The files of one table, in manifest order."""
        return [f for f in self.files if f.table == name]

    def paths(self, name: str) -> list[CorpusPath]:
        """Absolute paths of one table's files."""
        return [self.root / f.path for f in self.table(name)]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Dataset:
    """A folder of Parquet tables published through `manifest.json` (see the module docstring).

    `write`: the permission a transaction on it needs (storage/access.py); the strictest, writing the corpus
    itself, unless the dataset says otherwise.
    """

    def __init__(self, root: CorpusPath | str, tables: Iterable[str], lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
                 rules: ManifestRules = DEFAULT_RULES, write: Permission = Permission.IMPORT):
        self.root: CorpusPath = as_location(root)
        self.tables = tuple(tables)
        self.lock_timeout_s = lock_timeout_s
        self.rules = rules
        self.write = write
        self.object_lock: ObjectLock | None = None  # held during a transaction on object storage

    @property
    def manifest_path(self) -> CorpusPath:
        """Where the published state lives."""
        return self.root / MANIFEST

    def exists(self) -> bool:
        """Whether the dataset has a manifest."""
        return self.manifest_path.is_file()

    def read_manifest(self) -> dict[str, Any]:
        """The manifest as a dict, as stored (`snapshot` validates it); CorpusError if missing or not an object."""
        if not isinstance(self.root, ObjectPath) and not self.root.is_dir():
            raise CorpusError(f"{self.root}: not a directory")
        if not self.exists():
            raise CorpusError(f"{self.root}: no {MANIFEST}")
        manifest = read_json(self.manifest_path)
        if not isinstance(manifest, dict):
            raise CorpusError(f"{self.manifest_path}: expected a JSON object")
        return manifest

    def snapshot(self, manifest: dict[str, Any] | None = None, missing_ok: bool = False) -> Snapshot:
        """The current published state, validated (no lock needed: the manifest is replaced atomically).

        `missing_ok`: a dataset without a manifest reads as empty (a replay cache nothing was written to yet),
        unless its folders hold data an older Horizon Lens wrote, which needs upgrading first.
        """
        if manifest is None:
            if missing_ok and not self.exists():
                if self.unlisted_data():
                    raise self.rules.too_old(str(self.root), "data without a manifest")
                manifest = {"version": 0, "files": []}
            else:
                manifest = self.read_manifest()
        files = validate(manifest, self.tables, self.rules, str(self.manifest_path))
        return Snapshot(self.root, manifest, files)

    def unlisted_data(self) -> bool:
        """Whether a table folder holds Parquet files while there is no manifest (data from before manifests)."""
        if not self.root.is_dir():  # one request in object storage instead of one listing per table
            return False
        return any(self.table_files(table) for table in self.tables)

    @contextmanager
    def transaction(self, create: dict[str, Any] | None = None, timeout_s: float | None = None,
                    tag: str | None = None) -> Iterator[Transaction]:
        """Hold the lock, yield a Transaction; files it wrote are removed unless it committed.

        `create`: manifest keys for a new dataset (the folder is created); without it the dataset must
        exist. `tag`: 12 hex digits naming this transaction's files (default random; a deterministic
        writer such as the sample generator passes its own so the same seed gives the same bytes).
        The principal acting must hold the dataset's `write` permission (AccessDenied before anything is touched).
        """
        require(self.write)
        if create is None and not self.exists():
            raise CorpusError(f"{self.root}: no {MANIFEST}; not a dataset Horizon Lens can write to")
        self.root.mkdir(parents=True, exist_ok=True)
        with writer_lock(self.root, self.lock_timeout_s if timeout_s is None else timeout_s) as object_lock:
            self.object_lock = object_lock
            try:
                created = not self.exists()
                if created:
                    if self.unlisted_data():
                        raise self.rules.too_old(str(self.root), "data without a manifest")
                    manifest = {"dataset_id": uuid.uuid4().hex, **(create or {}), "version": 0, "files": []}
                    manifest.setdefault("created_at", _now())
                else:
                    manifest = self.read_manifest()
                snapshot = self.snapshot(manifest)
                self._remove_leftovers(snapshot)
                txn = Transaction(self, snapshot, created=created, tag=tag)
                try:
                    yield txn
                finally:
                    if not txn.committed:
                        txn.abort()
            finally:
                self.object_lock = None

    @contextmanager
    def upgrade(self, create: dict[str, Any] | None = None, start_over: bool = False
                ) -> Iterator[tuple[Transaction, dict[str, Any] | None]]:
        """Under the lock: the manifest as stored (unchecked; None without one) and a transaction to replace it.

        The transaction's commit publishes a new file list from scratch, keeping the other manifest keys (or
        `create` for a new dataset). For upgrades and rebuilds only: the caller reads the old files, writes or
        adopts what replaces them and removes them; nothing is cleaned up on entry, since the old list is not
        known to be readable. `start_over`: a manifest that cannot be read counts as none (derived data, which
        is built again from its source).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with writer_lock(self.root, self.lock_timeout_s) as object_lock:
            self.object_lock = object_lock
            try:
                try:
                    raw = self.read_manifest() if self.exists() else None
                except CorpusError:
                    if not start_over:
                        raise
                    raw = None
                base = dict(raw) if raw is not None else {"dataset_id": uuid.uuid4().hex, **(create or {}),
                                                           "created_at": _now()}
                version = base.get("version")
                base.update(files=[], version=version if isinstance(version, int) and version >= 0 else 0)
                txn = Transaction(self, Snapshot(self.root, base, ()), created=raw is None)
                try:
                    yield txn, raw
                finally:
                    if not txn.committed:
                        txn.abort()
            finally:
                self.object_lock = None

    def record_listing(self) -> bool:
        """Give a dataset written without a file list (by hand, or by an older Horizon Lens) its list, in one commit.

        Every Parquet file of its table folders (hive partitions included, hidden names skipped) is recorded with
        its row count, size and checksum. False if the manifest already lists its files.
        """
        with self.upgrade() as (txn, raw):
            if raw is None or "files" in raw:
                return False
            for table in self.tables:
                for rel in self.table_files(table):
                    txn.adopt(table, rel)
            txn.commit()
            return True

    def table_files(self, table: str) -> list[str]:
        """Relative paths of the Parquet files in one table's folder as listed (not as published), sorted.

        Hidden names are skipped. For telling and upgrading data written without a manifest.
        """
        folder = self.root / table
        if isinstance(folder, Path) and not folder.is_dir():
            return []
        found: list[Any] = sorted(folder.rglob("*.parquet"), key=str)
        rels = [p.relative_to(self.root) for p in found]
        return [r.as_posix() for r in rels if not any(part.startswith(".") for part in r.parts)]

    def _remove_leftovers(self, snapshot: Snapshot) -> None:
        """Delete files a crashed writer left: only names the writers make, only if not listed."""
        remote = isinstance(self.root, ObjectPath)
        listed = {f.path for f in snapshot.files}
        for folder in [self.root, *(self.root / t for t in self.tables)]:
            if not remote and not folder.is_dir():
                continue  # (an object store lists a missing prefix as empty)
            walk: list[Any] = list(folder.rglob("*") if folder != self.root else folder.iterdir())
            for p in walk:
                if OWN_FILE.match(p.name) and p.relative_to(self.root).as_posix() not in listed and p.is_file():
                    p.unlink(missing_ok=True)


class Transaction:
    """Changes to one dataset, published together by `commit()` (or not at all)."""

    def __init__(self, dataset: Dataset, snapshot: Snapshot, created: bool, tag: str | None = None):
        if tag is not None and not re.fullmatch(r"[0-9a-f]{12}", tag):
            raise ValueError("a transaction tag is 12 lowercase hex digits")
        self.dataset = dataset
        self.snapshot = snapshot  # the state this transaction started from, read under the lock
        self.created = created  # the dataset did not exist before this transaction
        self.tag = tag or uuid.uuid4().hex[:12]
        self.added: list[DataFile] = []
        self.removed: set[str] = set()
        self.updates: dict[str, Any] = {}
        self.committed = False
        self._count = 0
        self._staged: dict[Path, str] = {}  # reserved local files of a dataset in object storage -> their path
        self._adopted: set[str] = set()  # files that were there before: an abort leaves them

    def new_path(self, table: str, partition: str | None = None, suffix: str = ".parquet") -> str:
        """A fresh relative path for a file of `table` (optionally under a hive partition folder)."""
        if suffix not in SUFFIXES:
            raise ValueError(f"a dataset file is one of {', '.join(SUFFIXES)}")
        if table not in self.dataset.tables:
            raise CorpusError(f"{self.dataset.root}: no table {table!r} in this dataset")
        name = f"hl-{self.tag}-{self._count:05d}{suffix}"
        self._count += 1
        return check_path(f"{table}/{partition}/{name}" if partition else f"{table}/{name}", str(self.dataset.root))

    def write(self, table: str, data: Any, meta: dict[str, Any] | None = None,
              partition: str | None = None, options: dict[str, Any] | None = None) -> DataFile:
        """Write `data` (a pyarrow Table) as a new file of `table`; it becomes visible at commit.

        `options`: pyarrow.parquet.write_table arguments that replace the defaults (zstd, ROW_GROUP_SIZE rows).
        """
        rel = self.new_path(table, partition)
        path = self.dataset.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        # recorded before the write: an upload that fails half way is deleted by abort()
        self.added.append(DataFile(table, rel, -1, -1))
        try:
            size, sha = atomic.write_parquet(data, path, options)
        except OSError as exc:
            path.unlink(missing_ok=True)
            raise CorpusError(f"{path}: cannot be written ({exc.strerror or exc})") from exc
        entry = DataFile(table, rel, data.num_rows, size, sha, dict(meta or {}))
        self.added[-1] = entry
        return entry

    def reserve(self, table: str, partition: str | None = None, suffix: str = ".parquet") -> Path:
        """A fresh local path for a file that another writer (e.g. DuckDB's COPY) will create; `register` it after.

        For a dataset in object storage the path is a local staging file that `register` uploads.
        """
        rel = self.new_path(table, partition, suffix)
        root = self.dataset.root
        if isinstance(root, ObjectPath):
            path = Path(tempfile.mkdtemp(prefix=f"{atomic.TMP_PREFIX}horizonlens-")) / Path(rel).name
            self._staged[path] = rel
            return path
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def register(self, table: str, path: Path, meta: dict[str, Any] | None = None) -> DataFile:
        """Add a file written at a `reserve`d path; it becomes visible at commit."""
        rows = count_rows(path)
        if path in self._staged:  # upload the staged file under its reserved name
            rel = self._staged.pop(path)
            target = self.dataset.root / rel
            self.added.append(DataFile(table, rel, -1, -1))
            try:
                with path.open("rb") as src, target.open("wb") as dst:
                    out = atomic.Hashing(dst)
                    shutil.copyfileobj(src, out, 8 * 2**20)
            finally:
                shutil.rmtree(path.parent, ignore_errors=True)
            self.added[-1] = DataFile(table, rel, rows, out.size, out.sha.hexdigest(), dict(meta or {}))
            return self.added[-1]
        assert isinstance(self.dataset.root, Path)
        rel = path.relative_to(self.dataset.root).as_posix()
        entry = DataFile(table, rel, rows, path.stat().st_size, atomic.sha256_file(path), dict(meta or {}))
        self.added.append(entry)
        return entry

    def adopt(self, table: str, rel: str, meta: dict[str, Any] | None = None) -> DataFile:
        """List a Parquet file already in the dataset's folder (written by hand or by an older version).

        Its row count, size and checksum are recorded from the file; from then on it is a file like any other.
        """
        path = self.dataset.root / check_path(rel, str(self.dataset.root))
        try:
            rows = read_metadata(path).num_rows
            entry = DataFile(table, rel, rows, path.stat().st_size, atomic.sha256_file(path), dict(meta or {}))
        except (OSError, ValueError, pa.ArrowException, CorpusError) as exc:
            raise CorpusError(f"{path}: not a readable Parquet file ({exc})") from exc
        self.added.append(entry)
        self._adopted.add(rel)
        return entry

    def remove(self, files: Iterable[DataFile]) -> None:
        """Drop files from the published state at commit (deleted after the switch)."""
        self.removed.update(f.path for f in files)

    def update(self, **keys: Any) -> None:
        """Set manifest keys (sources, generator, ...) at commit."""
        self.updates.update(keys)

    def files(self) -> list[DataFile]:
        """The file list as it will be published."""
        kept = [f for f in self.snapshot.files if f.path not in self.removed]
        # a file this transaction wrote and then removed again (rewritten twice) is not published
        return kept + [f for f in self.added if f.path not in self.removed]

    def commit(self) -> Snapshot:
        """Publish: write the new manifest (the atomic switch), then delete removed files."""
        manifest = {**self.snapshot.manifest, **self.updates}
        manifest["files"] = [f.to_json() for f in self.files()]
        manifest["version"] = self.snapshot.version + 1
        manifest["updated_at"] = self.updates.get("updated_at") or datetime.now(timezone.utc).isoformat(
            timespec="seconds")
        manifest.setdefault("dataset_id", uuid.uuid4().hex)
        # what is published must read back: the same validator as every reader (a file listed twice is refused)
        validate(manifest, self.dataset.tables, self.dataset.rules, str(self.dataset.manifest_path))
        if isinstance(self.dataset.root, Path):
            for f in self.added:
                atomic.fsync_path(self.dataset.root / f.path)
        elif self.dataset.object_lock is not None:
            self.dataset.object_lock.check()  # a lapsed lease publishes nothing
        atomic.write_json_atomic(manifest, self.dataset.manifest_path)
        self.committed = True
        for rel in self.removed:
            (self.dataset.root / rel).unlink(missing_ok=True)
        return self.dataset.snapshot(manifest)

    def abort(self) -> None:
        """Delete the files this transaction wrote; the published state is unchanged."""
        for f in self.added:
            if f.path not in self._adopted:
                (self.dataset.root / f.path).unlink(missing_ok=True)
        self.added.clear()
        for staged in self._staged:
            shutil.rmtree(staged.parent, ignore_errors=True)
        self._staged.clear()


def count_rows(path: Path) -> int:
    """Rows of a dataset file, from its footer (Parquet) or its record batches (Arrow IPC)."""
    try:
        if path.suffix == ".arrow":
            with pa.memory_map(str(path)) as source:
                reader = pa.ipc.open_file(source)
                return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException) as exc:
        raise CorpusError(f"{path}: not a readable {'Arrow' if path.suffix == '.arrow' else 'Parquet'} file "
                          f"({exc})") from exc

