"""The corpus contract and everything that reads or writes it without a model.

A corpus is a directory of Parquet tables (docs/corpus-format.md) opened as DuckDB views by
`CorpusStore`. This facade is the public face of the layer; the modules behind it are:
schema (the tables), io (manifest, validation, atomic writes), layout (where replay caches live),
text (what a step's text is), quoting and filters (SQL built from parts), store (queries),
sql (the read-only console), derived (datasets computed from the corpus and kept up to date file by file),
search_index and aggregates (the two derived datasets), indexes (both, built together), importers (agent
logs in), annotations (labels on runs and steps), label_files (label files in), storage (a local directory
or an s3:// prefix), object_lock (the writer lock there) and scan (how DuckDB reads files).
"""

from horizonlens.corpus import annotations, label_files
from horizonlens.corpus.aggregates import aggregates_are_fresh, build_aggregates
from horizonlens.corpus.annotations import Label, add_labels, delete_label, edit_label, export_labels
from horizonlens.corpus.derived import DerivedSpec, DerivedTable, Rollup
from horizonlens.corpus.derived import is_fresh as derived_is_fresh
from horizonlens.corpus.derived import update as update_derived
from horizonlens.corpus.filters import TrajectoryFilter, where_sql
from horizonlens.corpus.indexes import build_all
from horizonlens.corpus.io import (
    MANIFEST,
    ROW_GROUP_SIZE,
    conform,
    new_manifest,
    open_corpus_files,
    parquet_files,
    read_manifest,
    validate_file,
    write_corpus,
    write_json_atomic,
    write_table_atomic,
)
from horizonlens.corpus.layout import (
    CHECKPOINT_META,
    file_stem,
    read_checkpoint_meta,
    replay_checkpoints,
    replay_dir,
    replays_dir,
)
from horizonlens.corpus.quoting import quote_ident, sql_string
from horizonlens.corpus.schema import (
    REPLAY_STEPS,
    ROUTING,
    SCHEMA_VERSION,
    SEGMENTS,
    STEPS,
    TABLES,
    TRAJECTORIES,
)
from horizonlens.corpus.search_index import INDEX_DIR, build_index, index_is_fresh, query_words
from horizonlens.corpus.sql import EXAMPLES, SqlResult, run_sql
from horizonlens.corpus.storage import CorpusPath, ObjectPath, as_location, is_remote, redact
from horizonlens.corpus.store import LIST_COLUMNS, SORTABLE, CorpusStore, Page, open_store
from horizonlens.corpus.text import approx_tokens, step_text, step_tokens_estimate
from horizonlens.errors import CorpusError, SchemaError, SqlError, StoreError

__all__ = [
    "CHECKPOINT_META",
    "DerivedSpec",
    "DerivedTable",
    "Rollup",
    "aggregates_are_fresh",
    "build_aggregates",
    "build_all",
    "derived_is_fresh",
    "update_derived",
    "EXAMPLES",
    "INDEX_DIR",
    "LIST_COLUMNS",
    "MANIFEST",
    "REPLAY_STEPS",
    "ROUTING",
    "ROW_GROUP_SIZE",
    "SCHEMA_VERSION",
    "SEGMENTS",
    "SORTABLE",
    "STEPS",
    "TABLES",
    "TRAJECTORIES",
    "CorpusError",
    "CorpusPath",
    "CorpusStore",
    "ObjectPath",
    "Label",
    "Page",
    "SchemaError",
    "SqlError",
    "SqlResult",
    "StoreError",
    "TrajectoryFilter",
    "add_labels",
    "annotations",
    "approx_tokens",
    "as_location",
    "build_index",
    "conform",
    "delete_label",
    "edit_label",
    "export_labels",
    "file_stem",
    "index_is_fresh",
    "is_remote",
    "label_files",
    "new_manifest",
    "open_corpus_files",
    "open_store",
    "parquet_files",
    "query_words",
    "quote_ident",
    "read_checkpoint_meta",
    "read_manifest",
    "redact",
    "replay_checkpoints",
    "replay_dir",
    "replays_dir",
    "run_sql",
    "sql_string",
    "step_text",
    "step_tokens_estimate",
    "validate_file",
    "where_sql",
    "write_corpus",
    "write_json_atomic",
    "write_table_atomic",
]
