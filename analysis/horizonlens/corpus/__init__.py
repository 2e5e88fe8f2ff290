"""The corpus contract: the tables a corpus holds, its folder and manifest, and what a step's text is."""

from horizonlens.corpus.files import (
    ROW_GROUP_SIZE,
    conform,
    corpus_dataset,
    new_manifest,
    open_corpus_files,
    parquet_files,
    read_manifest,
    validate_file,
    write_corpus,
)
from horizonlens.corpus.schema import (
    REPLAY_STEPS,
    ROUTING,
    SCHEMA_VERSION,
    SEGMENTS,
    STEPS,
    TABLES,
    TRAJECTORIES,
)
from horizonlens.corpus.text import approx_tokens, step_text, step_tokens_estimate

__all__ = [
    "REPLAY_STEPS", "ROUTING", "ROW_GROUP_SIZE", "SCHEMA_VERSION", "SEGMENTS", "STEPS", "TABLES", "TRAJECTORIES",
    "approx_tokens", "conform", "corpus_dataset", "new_manifest", "open_corpus_files", "parquet_files",
    "read_manifest", "step_text", "step_tokens_estimate", "validate_file", "write_corpus"
]
