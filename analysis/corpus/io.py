"""Reading and writing corpus directories: manifest, Parquet parts, validation, atomic writes.

Layout (docs/corpus-format.md):

    corpus/
      manifest.json
      trajectories/*.parquet
      steps/*.parquet
      replays/<checkpoint_id>/{steps,routing}/*.parquet
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from horizonlens.corpus.schema import SCHEMA_VERSION, TABLES, check_schema, validate_values
from horizonlens.errors import CorpusError, SchemaError

MANIFEST = "manifest.json"
# Rows per Parquet row group: small enough that DuckDB can skip groups by min/max statistics on
# trajectory_id, large enough that the footer stays small.
ROW_GROUP_SIZE = 16_384


@dataclass(frozen=True)
class CorpusFiles:
    """The Parquet files of one corpus, per table, validated against the schema."""

    root: Path
    manifest: dict[str, Any]
    files: dict[str, list[Path]]


def table_dir(root: Path, name: str) -> Path:
    return root / name


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not root.is_dir():
        raise CorpusError(f"{root}: not a directory (expected a corpus directory with {MANIFEST})")
    if not path.exists():
        raise CorpusError(f"{root}: no {MANIFEST}; is this a Horizon Lens corpus? (see docs/corpus-format.md)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise CorpusError(f"{path}: expected a JSON object")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise CorpusError(f"{path}: schema_version {version!r}, this Horizon Lens reads version {SCHEMA_VERSION}")
    return manifest


def parquet_files(directory: Path) -> list[Path]:
    """Visible Parquet files under a table directory (hive partitions included), sorted."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.rglob("*.parquet") if not any(part.startswith(".") for part in p.parts[-3:]))


def validate_file(path: Path, schema: pa.Schema) -> None:
    """Open a Parquet footer and check its schema; corrupt or truncated files raise CorpusError."""
    try:
        actual = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorpusError(f"{path}: not a readable Parquet file ({exc})") from exc
    try:
        check_schema(actual, schema, str(path))
    except SchemaError as exc:
        raise CorpusError(str(exc)) from exc


def open_corpus_files(root: Path | str) -> CorpusFiles:
    """Validate a corpus directory and list its files; raises CorpusError on the first problem."""
    root = Path(root)
    manifest = read_manifest(root)
    files: dict[str, list[Path]] = {}
    for name, schema in TABLES.items():
        found = parquet_files(table_dir(root, name))
        if not found:
            raise CorpusError(f"{root / name}: no Parquet files (every corpus has a '{name}' table)")
        for path in found:
            validate_file(path, schema)
        files[name] = found
    return CorpusFiles(root=root, manifest=manifest, files=files)


def write_table_atomic(table: pa.Table, path: Path) -> None:
    """Write one Parquet file under a temporary name in the same directory, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_SIZE, write_statistics=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def conform(table: pa.Table, name: str, where: str = "") -> pa.Table:
    """Cast a table to the contract's schema (column order and types) and check its values."""
    schema = TABLES[name]
    where = where or name
    try:
        check_schema(table.schema, schema, where)
        table = table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, SchemaError) as exc:
        raise CorpusError(f"{where}: {exc}") from exc
    try:
        validate_values(table, name, where)
    except SchemaError as exc:
        raise CorpusError(str(exc)) from exc
    return table


def new_manifest(sources: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "sources": sources,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def write_corpus(root: Path | str, trajectories: pa.Table, steps: pa.Table, manifest: dict[str, Any],
                 overwrite: bool = False) -> Path:
    """Write a whole corpus atomically: build it in a sibling temp dir, then swap it in.

    A failure at any point leaves whatever was at `root` untouched.
    """
    root = Path(root)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise CorpusError(f"{root}: exists and is not empty (pass overwrite to replace it)")
    trajectories = conform(trajectories, "trajectories")
    steps = conform(steps, "steps").sort_by([("trajectory_id", "ascending"), ("step", "ascending")])
    trajectories = trajectories.sort_by([("trajectory_id", "ascending")])
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".tmp-{root.name}-"))
    try:
        write_table_atomic(trajectories, staging / "trajectories" / "part-00000.parquet")
        write_table_atomic(steps, staging / "steps" / "part-00000.parquet")
        write_json_atomic(manifest, staging / MANIFEST)
        if root.exists():
            old = root.parent / f".tmp-old-{root.name}-{uuid.uuid4().hex}"
            os.replace(root, old)
            os.replace(staging, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, root)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return root
