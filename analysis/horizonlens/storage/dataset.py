"""Datasets: a folder of Parquet files whose published state is one manifest, switched atomically.

Every writable part of a corpus is a dataset: the corpus itself (tables `trajectories` and `steps`),
each checkpoint's replay cache, the annotations. A dataset's `manifest.json` lists the files of each
table with their row count, size and checksum, and a version that grows by one per commit. Readers
read the manifest (never the folder) and so see either the old or the new state, never a half.

Writers go through a `Transaction`, which holds the dataset's lock (`.lock`, an advisory `flock` that
the kernel releases when a writer dies) from start to commit:

1. on entry: leftovers of a crashed writer are deleted (files this module names `hl-*` or `.tmp-*` that
   the manifest does not list; files put there by hand are never touched);
2. `write()` writes new files under fresh names; they are invisible until the commit;
3. `commit()` writes the new manifest under a temporary name, fsyncs it and renames it over the old
   one (the switch); then it deletes the files the commit removed.

A crash before the switch leaves the old state plus unlisted files that the next writer deletes; a
crash after it leaves the new state plus files that the next writer deletes. Either way readers never
see a partial commit, and the next import never mistakes half-written data for complete data.

A manifest without a `files` list (a corpus written by hand, or by an older Horizon Lens) is read by
listing the table folders; its first commit records the list.

A dataset can also live in S3-compatible object storage (`s3://bucket/prefix`, corpus/storage.py). The
rules are the same: new objects under fresh names, then one PUT of the manifest (an object is replaced
whole, so readers see the old or the new manifest). The lock there is an object taken with a conditional
PUT and held as a renewed lease (corpus/object_lock.py) instead of a flock.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from horizonlens.errors import CorpusError, CorpusLockedError
from horizonlens.storage.access import Permission, require
from horizonlens.storage.location import CorpusPath, ObjectPath, as_location, read_metadata

if TYPE_CHECKING:
    from horizonlens.storage.object_lock import ObjectLock

MANIFEST = "manifest.json"
LOCK = ".lock"
# Rows per Parquet row group: small enough that DuckDB can skip groups by min/max statistics on
# trajectory_id, large enough that the footer stays small.
ROW_GROUP_SIZE = 16_384
# Files this module writes: only these (and .tmp-*) are ever deleted as leftovers. Tables are Parquet; a derived
# dataset may also hold Arrow IPC files (.arrow), which can be memory-mapped and read row by row.
OWN_FILE = re.compile(r"^(hl-[0-9a-f]{12}-\d{5}\.(parquet|arrow)|\.tmp-.*)$")
SUFFIXES = (".parquet", ".arrow")
DEFAULT_LOCK_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class DataFile:
    """One Parquet file of a dataset table, as the manifest records it."""

    table: str
    path: str  # relative to the dataset folder, with forward slashes
    rows: int
    bytes: int
    sha256: str | None = None  # of the whole file, recorded when written; None for files found by listing
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict[str, Any]:
        """The manifest entry."""
        out: dict[str, Any] = {"table": self.table, "path": self.path, "rows": self.rows, "bytes": self.bytes}
        if self.sha256:
            out["sha256"] = self.sha256
        if self.meta:
            out["meta"] = self.meta
        return out

    @classmethod
    def from_json(cls, value: Any, where: str) -> DataFile:
        """Read a manifest entry, refusing paths that would leave the dataset folder."""
        if not isinstance(value, dict) or not isinstance(value.get("path"), str) or not isinstance(
                value.get("table"), str):
            raise CorpusError(f"{where}: a 'files' entry is not an object with 'table' and 'path'")
        path = value["path"]
        if path.startswith("/") or ".." in path.split("/") or "\\" in path:
            raise CorpusError(f"{where}: file path {path!r} leaves the dataset folder")
        meta: dict[str, Any] = value["meta"] if isinstance(value.get("meta"), dict) else {}
        return cls(value["table"], path, int(value.get("rows") or 0), int(value.get("bytes") or 0),
                   value.get("sha256") if isinstance(value.get("sha256"), str) else None, meta)


@dataclass(frozen=True)
class Snapshot:
    """A dataset as of one version of its manifest: what readers query."""

    root: CorpusPath
    manifest: dict[str, Any]
    files: tuple[DataFile, ...]
    listed: bool  # False: the manifest has no file list and the folders were listed instead

    @property
    def version(self) -> int:
        """Grows by one with every commit (0 for a dataset never committed to)."""
        return int(self.manifest.get("version") or 0)

    @property
    def fingerprint(self) -> str:
        """Identifies this state: derived data (indexes, aggregates) built from it stays valid while it holds."""
        if self.listed:
            return f"{self.manifest.get('dataset_id', '')}:{self.version}"
        h = hashlib.sha256()
        for f in self.files:
            p = self.root / f.path
            st = p.stat() if p.exists() else None
            h.update(f"{f.path}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1}\n".encode())
        return "glob:" + h.hexdigest()[:16]

    def table(self, name: str) -> list[DataFile]:
        """The files of one table, in manifest order."""
        return [f for f in self.files if f.table == name]

    def paths(self, name: str) -> list[CorpusPath]:
        """Absolute paths of one table's files."""
        return [self.root / f.path for f in self.table(name)]


def read_json(path: CorpusPath) -> Any:
    """Parse a small JSON file; CorpusError says which file and why."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(64 * 2**20 + 1)
    except OSError as exc:
        raise CorpusError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if len(raw) > 64 * 2**20:
        raise CorpusError(f"{path}: larger than 64 MB; not a manifest")
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CorpusError(f"{path}: not valid JSON ({str(exc)[:200]})") from exc


def write_json_atomic(data: dict[str, Any], path: CorpusPath) -> None:
    """Write JSON under a temporary name, fsync, rename over `path`: readers see old or new, never half.

    The file gets the usual permissions (0666 minus the umask): other users of the machine can read a
    corpus they could read before. In object storage one PUT replaces the object whole.
    """
    if isinstance(path, ObjectPath):
        path.write_bytes((json.dumps(data, indent=1, sort_keys=True, default=str) + "\n").encode("utf-8"))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise CorpusError(f"{path}: cannot be written ({exc.strerror or exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)


def write_table_atomic(table: pa.Table, path: Path) -> None:
    """Write one Parquet file under a temporary name in the same folder, fsync, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    try:
        _write_parquet(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _Hashing:
    """A write-only file that checksums and counts what passes through it (no second read of the file)."""

    def __init__(self, raw: Any):
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.size += view.nbytes
        self.raw.write(view)
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        self.closed = True  # the caller closes the underlying file


def _write_parquet(table: pa.Table, path: CorpusPath, options: dict[str, Any] | None = None) -> tuple[int, str]:
    """Write one Parquet file (fsynced locally; one upload in object storage); returns (bytes, sha256).

    `options`: pyarrow.parquet.write_table arguments that replace the defaults.
    """
    with path.open("wb") as fh:
        out = _Hashing(fh)
        pq.write_table(table, out, **{"compression": "zstd", "row_group_size": ROW_GROUP_SIZE,
                                      "write_statistics": True, **(options or {})})
        if not isinstance(path, ObjectPath):
            fh.flush()
            os.fsync(fh.fileno())
    return out.size, out.sha.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: CorpusPath) -> str:
    """Checksum of a file's bytes (to tell a damaged file from a complete one)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Dataset:
    """A folder of Parquet tables published through `manifest.json` (see the module docstring).

    `write`: the permission a transaction on it needs (storage/access.py); the strictest, writing the corpus
    itself, unless the dataset says otherwise.
    """

    def __init__(self, root: CorpusPath | str, tables: Iterable[str], lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
                 write: Permission = Permission.IMPORT):
        self.root: CorpusPath = as_location(root)
        self.tables = tuple(tables)
        self.lock_timeout_s = lock_timeout_s
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
        """The manifest as a dict; CorpusError if it is missing or not a JSON object."""
        if not isinstance(self.root, ObjectPath) and not self.root.is_dir():
            raise CorpusError(f"{self.root}: not a directory")
        if not self.exists():
            raise CorpusError(f"{self.root}: no {MANIFEST}")
        manifest = read_json(self.manifest_path)
        if not isinstance(manifest, dict):
            raise CorpusError(f"{self.manifest_path}: expected a JSON object")
        return manifest

    def snapshot(self, manifest: dict[str, Any] | None = None) -> Snapshot:
        """The current published state (no lock needed: the manifest is replaced atomically)."""
        manifest = self.read_manifest() if manifest is None else manifest
        raw = manifest.get("files")
        if raw is None:
            return Snapshot(self.root, manifest, tuple(self._listed_files()), listed=False)
        if not isinstance(raw, list):
            raise CorpusError(f"{self.manifest_path}: 'files' is not a list")
        files = tuple(DataFile.from_json(v, str(self.manifest_path)) for v in raw)
        return Snapshot(self.root, manifest, files, listed=True)

    def _listed_files(self) -> list[DataFile]:
        """Files found by listing each table folder (hive partitions included, hidden names skipped)."""
        out = []
        for table in self.tables:
            folder = self.root / table
            if not folder.is_dir():
                continue
            found: list[Any] = sorted(folder.rglob("*.parquet"), key=str)
            for p in found:
                rel = p.relative_to(self.root)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                out.append(DataFile(table, rel.as_posix(), -1, p.stat().st_size))
        return out

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
        with self._lock(self.lock_timeout_s if timeout_s is None else timeout_s):
            if self.exists():
                manifest = self.read_manifest()
            else:
                # no "files" key yet: files already in the table folders (a cache or corpus written before
                # manifests) are found by listing, and the first commit records them
                manifest = {"dataset_id": uuid.uuid4().hex, **(create or {}), "version": 0}
                manifest.setdefault("created_at", _now())
            snapshot = self.snapshot(manifest)
            self._remove_leftovers(snapshot)
            txn = Transaction(self, snapshot, created=not self.exists(), tag=tag)
            try:
                yield txn
            finally:
                if not txn.committed:
                    txn.abort()

    @contextmanager
    def _lock(self, timeout_s: float) -> Iterator[None]:
        if isinstance(self.root, ObjectPath):
            with self._object_lock(self.root, timeout_s):
                yield
            return
        path = self.root / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise CorpusError(f"{self.root}: read-only for this user; cannot write here "
                                  "(import into a copy, or ask the owner)") from exc
            raise CorpusError(f"{path}: cannot open the lock file ({exc.strerror})") from exc
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = _read_holder(fd)
                        raise CorpusLockedError(f"{self.root}: another writer holds the lock{holder}; it did not "
                                                f"finish within {timeout_s:g} s. Try again when it is done.") from None
                    time.sleep(0.05)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} since {_now()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the flock (the kernel also releases it if we are killed)

    @contextmanager
    def _object_lock(self, root: ObjectPath, timeout_s: float) -> Iterator[None]:
        from horizonlens.storage.object_lock import ObjectLock

        lock = ObjectLock(root / LOCK)
        lock.acquire(timeout_s)
        self.object_lock = lock
        try:
            yield
        finally:
            self.object_lock = None
            lock.release()

    def _remove_leftovers(self, snapshot: Snapshot) -> None:
        """Delete files a crashed writer left: only names this module makes, only if not listed."""
        remote = isinstance(self.root, ObjectPath)
        if isinstance(self.root, Path):
            for old in self.root.glob(".import-*"):  # staging folders of Horizon Lens 0.1 imports
                if old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
        if not snapshot.listed:
            return
        listed = {f.path for f in snapshot.files}
        for folder in [self.root, *(self.root / t for t in self.tables)]:
            if not remote and not folder.is_dir():
                continue  # (an object store lists a missing prefix as empty)
            walk: list[Any] = list(folder.rglob("*") if folder != self.root else folder.iterdir())
            for p in walk:
                if OWN_FILE.match(p.name) and p.relative_to(self.root).as_posix() not in listed and p.is_file():
                    p.unlink(missing_ok=True)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f" ({text})" if text else ""


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

    def new_path(self, table: str, partition: str | None = None, suffix: str = ".parquet") -> str:
        """A fresh relative path for a file of `table` (optionally under a hive partition folder)."""
        if suffix not in SUFFIXES:
            raise ValueError(f"a dataset file is one of {', '.join(SUFFIXES)}")
        name = f"hl-{self.tag}-{self._count:05d}{suffix}"
        self._count += 1
        return f"{table}/{partition}/{name}" if partition else f"{table}/{name}"

    def write(self, table: str, data: pa.Table, meta: dict[str, Any] | None = None,
              partition: str | None = None, options: dict[str, Any] | None = None) -> DataFile:
        """Write `data` as a new file of `table`; it becomes visible at commit.

        `options`: pyarrow.parquet.write_table arguments that replace the defaults (zstd, ROW_GROUP_SIZE rows).
        """
        if table not in self.dataset.tables:
            raise CorpusError(f"{self.dataset.root}: no table {table!r} in this dataset")
        rel = self.new_path(table, partition)
        path = self.dataset.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        # recorded before the write: an upload that fails half way is deleted by abort()
        self.added.append(DataFile(table, rel, -1, -1))
        try:
            size, sha = _write_parquet(data, path, options)
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
        if table not in self.dataset.tables:
            raise CorpusError(f"{self.dataset.root}: no table {table!r} in this dataset")
        rel = self.new_path(table, partition, suffix)
        root = self.dataset.root
        if isinstance(root, ObjectPath):
            path = Path(tempfile.mkdtemp(prefix=".tmp-horizonlens-")) / Path(rel).name
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
                    out = _Hashing(dst)
                    shutil.copyfileobj(src, out, 8 * 2**20)
            finally:
                shutil.rmtree(path.parent, ignore_errors=True)
            self.added[-1] = DataFile(table, rel, rows, out.size, out.sha.hexdigest(), dict(meta or {}))
            return self.added[-1]
        assert isinstance(self.dataset.root, Path)
        rel = path.relative_to(self.dataset.root).as_posix()
        entry = DataFile(table, rel, rows, path.stat().st_size, sha256_file(path), dict(meta or {}))
        self.added.append(entry)
        return entry

    def remove(self, files: Iterable[DataFile]) -> None:
        """Drop files from the published state at commit (deleted after the switch)."""
        self.removed.update(f.path for f in files)

    def update(self, **keys: Any) -> None:
        """Set manifest keys (sources, generator, ...) at commit."""
        self.updates.update(keys)

    def files(self) -> list[DataFile]:
        """The file list as it will be published."""
        kept = [f if f.rows >= 0 else _describe(self.dataset.root, f) for f in self.snapshot.files
                if f.path not in self.removed]
        # a file this transaction wrote and then removed again (rewritten twice) is not published
        return kept + [f for f in self.added if f.path not in self.removed]

    def commit(self) -> Snapshot:
        """Publish: write the new manifest (the atomic switch), then delete removed files."""
        manifest = {**self.snapshot.manifest, **self.updates}
        manifest["files"] = [f.to_json() for f in self.files()]
        manifest["version"] = self.snapshot.version + 1
        manifest["updated_at"] = self.updates.get("updated_at") or _now()
        manifest.setdefault("dataset_id", uuid.uuid4().hex)
        if isinstance(self.dataset.root, Path):
            for f in self.added:
                _fsync_path(self.dataset.root / f.path)
        elif self.dataset.object_lock is not None:
            self.dataset.object_lock.check()  # a lapsed lease publishes nothing
        write_json_atomic(manifest, self.dataset.manifest_path)
        self.committed = True
        for rel in self.removed:
            (self.dataset.root / rel).unlink(missing_ok=True)
        return self.dataset.snapshot(manifest)

    def abort(self) -> None:
        """Delete the files this transaction wrote; the published state is unchanged."""
        for f in self.added:
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


def _fsync_path(path: Path) -> None:
    try:
        with path.open("rb") as fh:
            os.fsync(fh.fileno())
    except OSError:
        pass


def _describe(root: CorpusPath, f: DataFile) -> DataFile:
    """Row count and checksum of a file found by listing (recorded when a listed dataset is first committed to).

    The checksum costs one read of each such file, once; from then on derived data can recognise the file by
    content, not by its modification time (which a copy or a git checkout changes).
    """
    try:
        rows = read_metadata(root / f.path).num_rows
    except (OSError, pa.ArrowException) as exc:
        raise CorpusError(f"{root / f.path}: not a readable Parquet file ({exc})") from exc
    return DataFile(f.table, f.path, rows, (root / f.path).stat().st_size, sha256_file(root / f.path), f.meta)


def open_binary(path: CorpusPath) -> IO[bytes]:
    """Open a file for reading; CorpusError names it when it cannot be read."""
    try:
        return path.open("rb")
    except OSError as exc:
        raise CorpusError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
