"""Reading Parquet files (Hugging Face datasets, Horizon Lens exports) row by row as import records.

Each row becomes one record (a dict of its columns), read a few rows at a time; formats then detect and
convert it like a JSON record. A file that is not Parquet, a row group too large to read in bounded
memory, or damaged data is a `Problem` for that file or row; the rows before it still import.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from horizonlens.ingest.readers import MIB, Problem, Raw

MAGIC = b"PAR1"
ROWS_PER_BATCH = 64  # a row of a chat dataset holds a whole conversation
MAX_ROW_GROUP_BYTES = 1 << 30  # uncompressed; pyarrow decodes a column chunk of a row group at once


def parquet_records(path: Path) -> Iterator[Raw | Problem]:
    """The rows of a Parquet file as records `row 1`, `row 2`, ... (see the module docstring)."""
    file = str(path)
    try:
        reader = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        yield Problem(file, "file", f"not a readable Parquet file ({str(exc)[:200]})")
        return
    meta = reader.metadata
    for i in range(meta.num_row_groups):
        size = meta.row_group(i).total_byte_size
        if size > MAX_ROW_GROUP_BYTES:
            yield Problem(file, "file", f"row group {i} holds {size / MIB:,.0f} MB uncompressed; at most "
                                        f"{MAX_ROW_GROUP_BYTES / MIB:,.0f} MB are read at once (rewrite the file "
                                        "with smaller row groups)")
            return
    row = 0
    try:
        for batch in reader.iter_batches(batch_size=ROWS_PER_BATCH):
            for value in batch.to_pylist():
                row += 1
                yield Raw(value, file, f"row {row}")
    except (pa.ArrowException, OSError) as exc:
        yield Problem(file, f"row {row + 1}", f"unreadable Parquet data ({str(exc)[:200]})")
