"""Parquet whose row groups are cut by the volume of a list column, not by a row count.

A table with one row per key and a list per row (a term and the documents that contain it) is looked up by key:
row-group statistics find the group, and the reader then decodes that group's lists whole. When list lengths
range from one to a million, a fixed number of rows per group makes a lookup of a rare key decode a common key's
list beside it; groups that hold at most `max_elements` list elements keep every lookup small.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def _encodings(schema: pa.Schema) -> dict[str, str]:
    """Delta coding for every integer column and every list of integers (sorted numbers cost a few bits each)."""
    out = {}
    for f in schema:
        if pa.types.is_integer(f.type):
            out[f.name] = "DELTA_BINARY_PACKED"
        elif pa.types.is_list(f.type) and pa.types.is_integer(f.type.value_type):
            out[f"{f.name}.list.element"] = "DELTA_BINARY_PACKED"
    return out


def write_grouped(reader: pa.RecordBatchReader, path: Path, max_rows: int, max_elements: int,
                  compression_level: int = 9) -> int:
    """Write a stream of batches as one Parquet file (zstd, version 2 pages); the number of row groups.

    A row group ends before the row that would take it past `max_rows` rows or `max_elements` elements of the
    list columns together; a row longer than `max_elements` alone is a group of its own.
    """
    schema = reader.schema
    lists = [f.name for f in schema if pa.types.is_list(f.type)]
    strings = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    pending: list[pa.RecordBatch] = []
    rows = elements = groups = 0
    with pq.ParquetWriter(str(path), schema, compression="zstd", compression_level=compression_level,
                          data_page_version="2.0", use_dictionary=strings, column_encoding=_encodings(schema)) as w:

        def flush() -> None:
            nonlocal rows, elements, groups
            if pending:
                table = pa.Table.from_batches(pending, schema)
                w.write_table(table, row_group_size=table.num_rows)
                groups += 1
            pending.clear()
            rows = elements = 0

        for batch in reader:
            sizes = np.zeros(batch.num_rows, dtype=np.int64)
            for name in lists:
                sizes += pc.list_value_length(batch.column(name)).fill_null(0).to_numpy(zero_copy_only=False)
            start = 0
            for i, size in enumerate(sizes.tolist()):
                in_group = rows + i - start
                if in_group and (in_group >= max_rows or elements + size > max_elements):
                    if i > start:
                        pending.append(batch.slice(start, i - start))
                    flush()
                    start = i
                elements += size
            if start < batch.num_rows:
                pending.append(batch.slice(start))
                rows += batch.num_rows - start
        flush()
    return groups
