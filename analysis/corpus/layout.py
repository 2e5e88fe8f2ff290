"""Where things live inside a corpus directory: the one place the replay-cache layout is spelled out.

corpus/
manifest.json, trajectories/, steps/          the corpus tables (docs/corpus-format.md)
index/                                        derived search indexes
replays/<checkpoint_id>/manifest.json         the replay cache of one checkpoint: a dataset
replays/<checkpoint_id>/checkpoint.json       what the checkpoint was (architecture, experts, ...)
replays/<checkpoint_id>/<table>/*.parquet     replay results of that checkpoint
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from horizonlens.corpus.dataset import Dataset
from horizonlens.corpus.storage import CorpusPath, ObjectPath, as_location
from horizonlens.errors import CorpusError

REPLAYS = "replays"
# The views over replay caches, and the dataset table (= folder) each one reads.
REPLAY_VIEWS = {"replay_steps": "steps", "routing": "routing"}
CHECKPOINT_META = "checkpoint.json"
# A checkpoint id as Horizon Lens makes it (architecture-hash); ids found on disk must match it.
CHECKPOINT_ID = re.compile(r"^[a-z0-9_.-]{1,64}$")
# SQL regex that recovers the checkpoint id from a replay file's path.
CHECKPOINT_FROM_PATH_SQL = r"replays/([^/]+)/"


def file_stem(trajectory_id: str) -> str:
    """A file-system-safe, collision-free name for a trajectory id."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", trajectory_id)[:80]
    return f"{safe}-{hashlib.sha1(trajectory_id.encode()).hexdigest()[:8]}"


def replays_dir(corpus: CorpusPath | str) -> CorpusPath:
    """The folder holding every checkpoint's replay cache."""
    return as_location(corpus) / REPLAYS


def replay_dir(corpus: CorpusPath | str, checkpoint_id: str) -> CorpusPath:
    """The replay cache of one checkpoint; refuses ids that could escape the corpus."""
    if not CHECKPOINT_ID.match(checkpoint_id):
        raise ValueError(f"not a checkpoint id: {checkpoint_id!r}")
    return replays_dir(corpus) / checkpoint_id


def replay_dataset(corpus: CorpusPath | str, checkpoint_id: str) -> Dataset:
    """The replay cache of one checkpoint as a dataset."""
    return Dataset(replay_dir(corpus, checkpoint_id), tuple(REPLAY_VIEWS.values()))


def replay_checkpoints(corpus: CorpusPath | str) -> list[str]:
    """Checkpoint ids that have a replay cache folder in this corpus, sorted."""
    base = replays_dir(corpus)
    if isinstance(base, ObjectPath):  # one listing; a missing prefix lists as empty
        return sorted(p.name for p in base.subdirs() if CHECKPOINT_ID.match(p.name))
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and CHECKPOINT_ID.match(p.name))


def read_checkpoint_meta(corpus: CorpusPath | str, checkpoint_id: str) -> dict[str, Any]:
    """What was recorded about a checkpoint when its first replay was cached ({} if nothing readable)."""
    path = replay_dir(corpus, checkpoint_id) / CHECKPOINT_META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, CorpusError):
        return {}
    return meta if isinstance(meta, dict) else {}
