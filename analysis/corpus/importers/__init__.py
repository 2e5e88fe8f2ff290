"""Agent logs in: one module per source format, a bounded streaming reader, and the import pipeline.

`import_paths` reads files (readers.py: JSON, JSON Lines, JSON arrays; zips.py: Inspect `.eval`
archives), picks each record's format (registry.py: highest priority whose `detect` accepts it),
converts it (formats/*.py, raising only `RecordError` for a malformed record) and publishes the rows in
one corpus transaction (writer.py). docs/importing.md describes the formats and the limits.
"""

from horizonlens.corpus.importers.base import Format
from horizonlens.corpus.importers.pipeline import ImportReport, import_paths, input_files, records_of
from horizonlens.corpus.importers.readers import (
    MAX_DEPTH,
    MAX_PROBLEMS_PER_FILE,
    MAX_RECORD_BYTES,
    MAX_STRING_BYTES,
    Problem,
    Raw,
)
from horizonlens.corpus.importers.registry import BY_NAME, FORMATS, convert, detect
from horizonlens.corpus.importers.zips import MAX_ARCHIVE_BYTES, MAX_MEMBER_BYTES, MAX_RATIO
from horizonlens.errors import ImportFailed, RecordError

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
