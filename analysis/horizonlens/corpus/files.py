"""Corpus directories: the manifest, validation against the contract, and whole-corpus writes.

The corpus itself is a `Dataset` (storage/dataset.py) with the tables `trajectories` and `steps` and the
layout of docs/corpus-format.md; every write goes through one of its transactions, so readers see a corpus
either before or after a write.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from horizonlens.corpus.schema import SCHEMA_VERSION, TABLES, check_schema, validate_values
from horizonlens.errors import CorpusError, SchemaError
from horizonlens.storage.atomic import ROW_GROUP_SIZE
from horizonlens.storage.dataset import Dataset, Snapshot
from horizonlens.storage.location import CorpusPath, ObjectPath, as_location, read_schema
from horizonlens.storage.manifest import MANIFEST, ManifestRules

__all__ = [
    "MANIFEST",
    "ROW_GROUP_SIZE",
    "CORPUS_RULES",
    "CorpusFiles",
    "UPGRADE",
    "conform",
    "corpus_dataset",
    "new_manifest",
    "open_corpus_files",
    "parquet_files",
    "read_manifest",
    "validate_file",
    "write_corpus",
]

# The one command that upgrades data an older Horizon Lens wrote (docs/cli.md).
UPGRADE = "horizonlens migrate CORPUS"
CORPUS_RULES = ManifestRules(kind="corpus", versions={"schema_version": (SCHEMA_VERSION,)}, upgrade=UPGRADE)


@dataclass(frozen=True)
class CorpusFiles:
    """The Parquet files of one corpus, per table, validated against the schema."""

    root: CorpusPath
    manifest: dict[str, Any]
    files: dict[str, list[CorpusPath]]
    snapshot: Snapshot


def corpus_dataset(root: CorpusPath | str) -> Dataset:
    """The corpus itself as a dataset (tables `trajectories` and `steps`)."""
    return Dataset(as_location(root), TABLES, rules=CORPUS_RULES)


def _snapshot(root: CorpusPath) -> Snapshot:
    """The corpus's published state, its manifest checked; CorpusError says what is wrong with the directory."""
    if isinstance(root, Path) and not root.is_dir():
        raise CorpusError(f"{root}: not a directory (expected a corpus directory with {MANIFEST})")
    if not (root / MANIFEST).exists():
        raise CorpusError(f"{root}: no {MANIFEST}; is this a Horizon Lens corpus? (see docs/corpus-format.md)")
    return corpus_dataset(root).snapshot()


def read_manifest(root: CorpusPath | str) -> dict[str, Any]:
    """The corpus manifest, checked: CorpusError says what is wrong with the directory."""
    return _snapshot(as_location(root)).manifest


def parquet_files(directory: Path) -> list[Path]:
    """Visible Parquet files under a folder (hive partitions included), sorted."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.rglob("*.parquet") if not any(part.startswith(".") for part in
                                                                        p.relative_to(directory).parts))


def validate_file(path: CorpusPath, schema: pa.Schema | None, expected_bytes: int | None = None) -> None:
    """Check a dataset file: its size against the manifest, its Parquet footer and its schema (when given).

    Damaged files raise CorpusError naming the file. An Arrow IPC file (derived data) is checked by size only;
    its reader reports what else is wrong.
    """
    if expected_bytes is not None and expected_bytes >= 0:
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise CorpusError(f"{path}: listed in the manifest but missing ({exc.strerror})") from exc
        if size != expected_bytes:
            raise CorpusError(f"{path}: {size:,} bytes on disk but {expected_bytes:,} when written (truncated or "
                              "overwritten)")
    if path.name.endswith(".arrow"):
        return
    try:
        actual = read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise CorpusError(f"{path}: not a readable Parquet file ({exc})") from exc
    if schema is None:
        return
    try:
        check_schema(actual, schema, str(path))
    except SchemaError as exc:
        raise CorpusError(str(exc)) from exc


def open_corpus_files(root: CorpusPath | str) -> CorpusFiles:
    """Validate a corpus directory and list its published files; raises CorpusError on the first problem."""
    root = as_location(root)
    snapshot = _snapshot(root)
    files: dict[str, list[CorpusPath]] = {}
    for name, schema in TABLES.items():
        entries = snapshot.table(name)
        for entry in entries:
            validate_file(root / entry.path, schema, entry.bytes)
        files[name] = [root / e.path for e in entries]
    return CorpusFiles(root=root, manifest=snapshot.manifest, files=files, snapshot=snapshot)


def conform(table: pa.Table, name: str, where: str = "") -> pa.Table:
    """Cast a table to the contract's schema (column order and types) and check its values."""
    schema = TABLES[name]
    where = where or name
    try:
        check_schema(table.schema, schema, where)
        table = table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, SchemaError) as exc:
        raise CorpusError(f"{where}: {exc}") from exc
    validate_values(table, name, where)
    return table


def new_manifest(sources: list[str], **extra: Any) -> dict[str, Any]:
    """Manifest keys of a new corpus."""
    return {
        "schema_version": SCHEMA_VERSION,
        "sources": sources,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def is_empty_dir(root: CorpusPath) -> bool:
    """A folder with nothing in it but, possibly, the lock file an aborted writer left."""
    if isinstance(root, ObjectPath):
        return all(p.name == ".lock" for p in root.iterdir())  # a prefix without objects lists as empty
    return root.is_dir() and all(p.name == ".lock" for p in root.iterdir())


def write_corpus(root: Path | str | ObjectPath, trajectories: pa.Table, steps: pa.Table, manifest: dict[str, Any],
                 overwrite: bool = False, tag: str | None = None) -> Path:
    """Write a whole corpus: built in a sibling staging folder, then renamed into place.

    A failure at any point leaves whatever was at `root` untouched. (Local directories only: an object
    store corpus is created by `horizonlens import --into s3://...`.)
    """
    if isinstance(root, ObjectPath) or str(root).startswith("s3:"):
        raise CorpusError(f"{root}: whole-corpus writes go to local directories; import into s3:// instead")
    root = Path(root)
    if root.exists() and not is_empty_dir(root) and not overwrite:
        raise CorpusError(f"{root}: exists and is not empty (pass overwrite to replace it)")
    trajectories = conform(trajectories, "trajectories").sort_by([("trajectory_id", "ascending")])
    steps = conform(steps, "steps").sort_by([("trajectory_id", "ascending"), ("step", "ascending")])
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".tmp-{root.name}-"))
    try:
        with corpus_dataset(staging).transaction(create=manifest, tag=tag) as txn:
            txn.write("trajectories", trajectories)
            txn.write("steps", steps)
            if "created_at" in manifest:  # a deterministic writer fixes both timestamps
                txn.update(updated_at=manifest["created_at"])
            txn.commit()
        (staging / ".lock").unlink(missing_ok=True)
        if root.exists():
            old = root.parent / f".tmp-old-{root.name}-{os.getpid()}"
            os.replace(root, old)
            os.replace(staging, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, root)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return root
