"""Replays: the per-checkpoint cache of replay results, its routing codec (two tiers) and compaction."""

from horizonlens.replays.cache import ReplayCache, list_checkpoints
from horizonlens.replays.compact import CompactReport, compact
from horizonlens.replays.layout import (
    CHECKPOINT_META,
    file_stem,
    read_checkpoint_meta,
    replay_checkpoints,
    replay_dir,
    replays_dir,
)

__all__ = [
    "CHECKPOINT_META", "CompactReport", "ReplayCache", "compact", "file_stem", "list_checkpoints",
    "read_checkpoint_meta", "replay_checkpoints", "replay_dir", "replays_dir"
]
