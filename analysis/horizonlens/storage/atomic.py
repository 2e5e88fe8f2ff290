"""Atomic writes: a file appears whole under its name or not at all, on local disk and in object storage.

`write_atomic` is the one way Horizon Lens replaces a file: locally it writes a temporary sibling (`.tmp-*`,
a name the dataset writers clean up after a crash), fsyncs it, renames it over the target and fsyncs the folder;
in object storage one PUT replaces the object whole. Manifests, exports, bundles, rollout files, the users file,
checkpoint notes and Parquet files all go through it.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from horizonlens.errors import CorpusError
from horizonlens.storage.location import CorpusPath, ObjectPath

# Rows per Parquet row group: small enough that DuckDB can skip groups by min/max statistics on
# trajectory_id, large enough that the footer stays small.
ROW_GROUP_SIZE = 16_384
TMP_PREFIX = ".tmp-"


def write_atomic(path: CorpusPath, write: Callable[[IO[bytes]], object], mode: int = 0o666) -> None:
    """Call `write(fh)` on a fresh file and publish it as `path` in one step; readers see old or new, never half.

    A local file is created with `mode` minus the umask before any byte is written (0o600 keeps a secret
    owner-only from the start). A failure leaves `path` as it was and raises CorpusError naming it.
    """
    if isinstance(path, ObjectPath):
        try:
            with path.open("wb") as fh:
                write(fh)
        except OSError as exc:
            raise CorpusError(f"{path}: cannot be written ({exc})") from exc
        return
    tmp = path.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise CorpusError(f"{path}: cannot be written ({exc.strerror or exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(data: bytes, path: CorpusPath, mode: int = 0o666) -> None:
    """Replace `path` with these bytes atomically (`mode` as for `write_atomic`)."""
    write_atomic(path, lambda fh: fh.write(data), mode)


def write_json_atomic(data: dict[str, Any], path: CorpusPath) -> None:
    """Replace `path` with this JSON (indented, keys sorted) atomically."""
    write_bytes_atomic((json.dumps(data, indent=1, sort_keys=True, default=str) + "\n").encode("utf-8"), path)


def write_table_atomic(table: pa.Table, path: CorpusPath, options: dict[str, Any] | None = None) -> None:
    """Replace `path` with one Parquet file of `table` atomically (`options` as for `write_parquet`)."""
    write_atomic(path, lambda fh: write_parquet_to(table, fh, options))


class Hashing:
    """A write-only file that checksums and counts what passes through it (no second read of the file)."""

    def __init__(self, raw: Any):
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        """Pass `data` on, counting and hashing it."""
        view = memoryview(data)
        self.sha.update(view)
        self.size += view.nbytes
        self.raw.write(view)
        return view.nbytes

    def tell(self) -> int:
        """Bytes written so far (pyarrow asks)."""
        return self.size

    def flush(self) -> None:
        """Flush the underlying file."""
        self.raw.flush()

    def close(self) -> None:
        """Mark closed; the caller closes the underlying file."""
        self.closed = True


def write_parquet_to(table: pa.Table, fh: Any, options: dict[str, Any] | None = None) -> None:
    """Write `table` as Parquet to an open file: zstd, ROW_GROUP_SIZE rows, statistics (`options` replace them)."""
    pq.write_table(table, fh, **{"compression": "zstd", "row_group_size": ROW_GROUP_SIZE,
                                 "write_statistics": True, **(options or {})})


def write_parquet(table: pa.Table, path: CorpusPath, options: dict[str, Any] | None = None) -> tuple[int, str]:
    """Write one new Parquet file under a fresh name (fsynced locally; one upload in object storage).

    Returns (bytes, sha256). A dataset file needs no rename: nothing lists it until its commit.
    """
    with path.open("wb") as fh:
        out = Hashing(fh)
        write_parquet_to(table, out, options)
        if not isinstance(path, ObjectPath):
            fh.flush()
            os.fsync(fh.fileno())
    return out.size, out.sha.hexdigest()


def sha256_file(path: CorpusPath) -> str:
    """Checksum of a file's bytes (to tell a damaged file from a complete one)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a rename in this folder durable (best effort: some file systems refuse)."""
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


def fsync_path(path: Path) -> None:
    """Flush a written file to disk (best effort)."""
    try:
        with path.open("rb") as fh:
            os.fsync(fh.fileno())
    except OSError:
        pass
