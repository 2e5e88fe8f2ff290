"""Storage: datasets and their manifests, transactions, local or S3 locations, locks, atomic writes, scans.

Everything a corpus part (the corpus tables, a replay cache, labels, derived data) is stored as goes
through here; nothing in this room knows what the tables mean.
"""

from horizonlens.storage.atomic import write_atomic, write_bytes_atomic, write_json_atomic, write_table_atomic
from horizonlens.storage.dataset import Dataset, Snapshot, Transaction
from horizonlens.storage.location import (
    CorpusPath,
    ObjectPath,
    as_location,
    is_remote,
    read_metadata,
    read_schema,
    read_table,
    redact,
)
from horizonlens.storage.manifest import MANIFEST, DataFile, ManifestRules
from horizonlens.storage.quoting import quote_ident, sql_string
from horizonlens.storage.scan import FileScans, hive_keys

__all__ = [
    "CorpusPath", "DataFile", "Dataset", "FileScans", "MANIFEST", "ManifestRules", "ObjectPath", "Snapshot",
    "Transaction", "as_location", "hive_keys", "is_remote", "quote_ident", "read_metadata", "read_schema",
    "read_table", "redact", "sql_string", "write_atomic", "write_bytes_atomic", "write_json_atomic",
    "write_table_atomic"
]
