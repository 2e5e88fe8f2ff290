"""Replays: the per-checkpoint cache of replay results, its routing codec (two tiers), compaction and upgrades."""

from horizonlens.replays.cache import ReplayCache, StoredReplay, list_checkpoints
from horizonlens.replays.compact import CompactReport, compact
from horizonlens.replays.layout import (
    CHECKPOINT_META,
    read_checkpoint_meta,
    replay_checkpoints,
    replay_dir,
    replays_dir,
)
from horizonlens.replays.migrate import MigrateReport, migrate

__all__ = [
    "CHECKPOINT_META", "CompactReport", "MigrateReport", "ReplayCache", "StoredReplay", "compact",
    "list_checkpoints", "migrate", "read_checkpoint_meta", "replay_checkpoints", "replay_dir", "replays_dir"
]
