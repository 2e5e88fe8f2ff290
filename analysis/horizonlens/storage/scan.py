"""How DuckDB reads a table's Parquet files: `read_parquet` on local disk, pyarrow datasets in object storage."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from horizonlens.storage.location import CorpusPath, ObjectPath, arrow_dataset, read_schema
from horizonlens.storage.quoting import quote_ident, sql_string_list


def hive_keys(paths: list[str]) -> list[str]:
    """Partition keys (`key=value` folders) in a table's file paths."""
    return sorted({part.split("=", 1)[0] for p in paths for part in p.split("/")[:-1] if "=" in part})


def read_parquet_sql(paths: list[Path], union: bool, filename: bool = False, hive: bool | None = None) -> str:
    """DuckDB's `read_parquet` over local files; `hive`: `key=value` folders as columns (None: if there are any)."""
    names = [str(p) for p in paths]
    hive = bool(hive_keys([p.as_posix() for p in paths])) if hive is None else hive
    return (f"read_parquet({sql_string_list(names)}, hive_partitioning = {str(hive).lower()}, "
            f"union_by_name = {str(union).lower()}{', filename = true' if filename else ''})")


class FileScans:
    """How DuckDB reads a table's Parquet files: `read_parquet` on local disk, registered pyarrow datasets in S3.

    Registered objects belong to one DuckDB connection, so `attach` registers them on every cursor. Each is
    registered under a name derived from its `key`, so rebuilding a view replaces its dataset.
    """

    def __init__(self, root: CorpusPath):
        self.root = root
        self.datasets: dict[str, Any] = {}

    def relation(self, con: duckdb.DuckDBPyConnection, key: str, paths: Sequence[CorpusPath], union: bool,
                 hive: bool | None = None) -> str:
        """A FROM clause that scans these files (`key` names the part of a view they are).

        `hive`: read `key=value` folders as partition columns (None: when the paths have any).
        """
        if not isinstance(self.root, ObjectPath):
            return read_parquet_sql([Path(str(p)) for p in paths], union, hive=hive)
        schemas = [read_schema(p).remove_metadata() for p in (paths if union else paths[:1])]
        schema = _scannable(pa.unify_schemas(schemas))
        base = None
        first = paths[0]
        if hive is not False and hive_keys([str(p) for p in paths]) and isinstance(first, ObjectPath):
            base = self.root / first.relative_to(self.root).parts[0]  # partition columns: folders below the table's
        registered = "_files_" + "".join(c if c.isalnum() else "_" for c in key)
        self.datasets[registered] = arrow_dataset(list(paths), schema, base)
        con.register(registered, self.datasets[registered])
        return quote_ident(registered)

    def forget(self, con: duckdb.DuckDBPyConnection, prefix: str) -> None:
        """Unregister the datasets whose key starts with `prefix` (views about to be rebuilt)."""
        for name in [n for n in self.datasets if n.startswith("_files_" + prefix)]:
            con.unregister(name)
            del self.datasets[name]

    def attach(self, cur: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        """Make the registered datasets visible to a new cursor."""
        for name, dataset in self.datasets.items():
            cur.register(name, dataset)
        return cur


_SQL_TYPES = {pa.int8(): "TINYINT", pa.int16(): "SMALLINT", pa.int32(): "INTEGER", pa.int64(): "BIGINT",
              pa.uint8(): "UTINYINT", pa.uint16(): "USMALLINT", pa.uint32(): "UINTEGER", pa.uint64(): "UBIGINT",
              pa.float16(): "FLOAT", pa.float32(): "FLOAT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN",
              pa.string(): "VARCHAR", pa.large_string(): "VARCHAR", pa.binary(): "BLOB", pa.large_binary(): "BLOB"}


def sql_type(t: pa.DataType) -> str:
    """The DuckDB type a Parquet column of this Arrow type reads as."""
    if t in _SQL_TYPES:
        return _SQL_TYPES[t]
    if pa.types.is_timestamp(t):
        return "TIMESTAMP WITH TIME ZONE" if t.tz else "TIMESTAMP"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"{sql_type(t.value_type)}[]"
    if pa.types.is_struct(t):
        return "STRUCT(" + ", ".join(f"{quote_ident(f.name)} {sql_type(f.type)}" for f in t) + ")"
    raise ValueError(f"no DuckDB type for {t}")


def empty_relation(schema: pa.Schema) -> str:
    """A FROM clause with these columns and no rows (what a table without files reads as)."""
    cols = ", ".join(f"CAST(NULL AS {sql_type(f.type)}) AS {quote_ident(f.name)}" for f in schema)
    return f"(SELECT {cols} WHERE false)"


def _widen(t: pa.DataType) -> pa.DataType:
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(pa.field(t.value_field.name, _widen(t.value_type)))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _widen(f.type), f.nullable) for f in t])
    return t


def _scannable(schema: pa.Schema) -> pa.Schema:
    """The schema DuckDB can scan from Arrow: half floats (routing weights, entropy) read as float32.

    DuckDB's own Parquet reader does the same for local files, so the views have one type either way.
    """
    return pa.schema([pa.field(f.name, _widen(f.type), f.nullable) for f in schema])
