"""Agent logs in: one module per source format, a bounded streaming reader, and the import pipeline.

`import_paths` reads files (readers.py: JSON, JSON Lines, JSON arrays; zips.py: Inspect `.eval`
archives), picks each record's format (registry.py: highest priority whose `detect` accepts it),
converts it (formats/*.py, raising only `RecordError` for a malformed record) and publishes the rows in
one corpus transaction (writer.py). docs/importing.md describes the formats and the limits.
"""

from horizonlens.errors import ImportFailed, RecordError
from horizonlens.ingest.base import Format
from horizonlens.ingest.pipeline import ImportReport, import_paths, input_files, records_of
from horizonlens.ingest.readers import (
    MAX_DEPTH,
    MAX_PROBLEMS_PER_FILE,
    MAX_RECORD_BYTES,
    MAX_STRING_BYTES,
    Problem,
    Raw,
)
from horizonlens.ingest.registry import BY_NAME, FORMATS, convert, detect
from horizonlens.ingest.zips import MAX_ARCHIVE_BYTES, MAX_MEMBER_BYTES, MAX_RATIO

__all__ = [
    "BY_NAME",
    "FORMATS",
    "MAX_ARCHIVE_BYTES",
    "MAX_DEPTH",
    "MAX_MEMBER_BYTES",
    "MAX_PROBLEMS_PER_FILE",
    "MAX_RATIO",
    "MAX_RECORD_BYTES",
    "MAX_STRING_BYTES",
    "Format",
    "ImportFailed",
    "ImportReport",
    "Problem",
    "Raw",
    "RecordError",
    "convert",
    "detect",
    "import_paths",
    "input_files",
    "records_of",
]
