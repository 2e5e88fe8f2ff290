"""Data leaving Horizon Lens as files: training exports, offline bundles, and the redaction both apply.

`export_runs` writes selected runs in the formats trainers read (training.py; docs/export.md);
`write_bundle` writes one run as a self-contained HTML page (bundle.py). Both write atomically
(output.py) and replace secrets first (redact.py).
"""

from horizonlens.errors import ExportError
from horizonlens.export.output import ExportFolder, read_export_manifest, write_file_atomic
from horizonlens.export.records import DATA_FILES, META_COLUMNS, PARQUET_SCHEMA
from horizonlens.export.redact import BUILTIN, Redactor
from horizonlens.export.selection import FORMATS, OVER_MAX_TOKENS, TRUNCATE_AT, ExportOptions, select_runs
from horizonlens.export.training import ExportReport, export_runs, read_manifest

__all__ = [
    "BUILTIN",
    "DATA_FILES",
    "FORMATS",
    "META_COLUMNS",
    "OVER_MAX_TOKENS",
    "PARQUET_SCHEMA",
    "TRUNCATE_AT",
    "ExportError",
    "ExportFolder",
    "ExportOptions",
    "ExportReport",
    "Redactor",
    "export_runs",
    "read_export_manifest",
    "read_manifest",
    "select_runs",
    "write_file_atomic",
]
