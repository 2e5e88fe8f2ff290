"""Parquet row groups cut by the volume of a list column (storage/grouped.py)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from horizonlens.storage.grouped import write_grouped


def test_groups_are_cut_by_rows_and_by_list_elements(tmp_path: Path) -> None:
    lengths = [1, 5, 100, 3, 250, 1, 1, 1, 40, 300, 2]
    table = pa.table({"term": [f"t{i:02d}" for i in range(len(lengths))], "unit": [7] * len(lengths),
                      "docs": [list(range(n)) for n in lengths]})
    path = tmp_path / "p.parquet"
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=3))  # cuts span batches
    assert write_grouped(reader, path, max_rows=4, max_elements=120) == 5
    meta = pq.ParquetFile(path).metadata
    # 1+5+100+3 fit; 250 alone; four rows at most; 300 alone; the rest
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [4, 1, 4, 1, 1]
    assert pq.read_table(path).equals(table)
    docs = meta.row_group(0).column(2)
    assert "DELTA_BINARY_PACKED" in docs.encodings and docs.compression == "ZSTD"
    assert meta.row_group(0).column(0).statistics.min == "t00"  # lookups by key can skip groups


def test_an_empty_stream_writes_an_empty_file(tmp_path: Path) -> None:
    schema = pa.schema([("term", pa.string()), ("docs", pa.list_(pa.int32()))])
    path = tmp_path / "e.parquet"
    assert write_grouped(pa.RecordBatchReader.from_batches(schema, []), path, 10, 10) == 0
    assert pq.read_table(path).num_rows == 0
