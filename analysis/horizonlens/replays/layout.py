"""Where things live inside a corpus directory: the one place the replay-cache layout is spelled out.

corpus/
manifest.json, trajectories/, steps/          the corpus tables (docs/corpus-format.md)
index/                                        derived search indexes
replays/<checkpoint_id>/manifest.json         the replay cache of one checkpoint: a dataset
replays/<checkpoint_id>/checkpoint.json       what the checkpoint was (architecture, experts, ...)
replays/<checkpoint_id>/selection.json        how the replayed runs were chosen (a random sample's record)
replays/<checkpoint_id>/<table>/*.parquet     replay results of that checkpoint, one folder per table:
  steps/             per-step results (view `replay_steps`)
  routing_steps/     routing per (trajectory, step, layer, expert)     the step tier, written by every replay
  routing_segments/  routing per (trajectory, segment, layer, expert)  (views of the same names)
  routing_tokens/    routing per (token, layer), compact               the token tier (view `routing`)
  token_surprisal/   surprisal and top-1 per token (optional: replays before it lack it; read by the token view)
  rollout_tokens/    the same, as an inference engine routed it       (view `routing_rollout`)
  rollout_compare/   rollout vs replay per (trajectory, step, segment, layer)  (views of the same names;
  rollout_compare_steps/  ... per (trajectory, step, segment), across layers   metrics/rollout.py)
  routing/           format-1 token rows (one file per trajectory); read, converted by `horizonlens compact`
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pyarrow as pa

from horizonlens.corpus.schema import (
    REPLAY_STEPS,
    ROLLOUT_COMPARE,
    ROLLOUT_COMPARE_STEPS,
    ROUTING,
    ROUTING_SEGMENTS,
    ROUTING_STEPS,
    ROUTING_TOKENS,
    TOKEN_SURPRISAL,
)
from horizonlens.errors import CorpusError
from horizonlens.replays.codec import SOURCE_TABLES
from horizonlens.storage.dataset import Dataset
from horizonlens.storage.location import CorpusPath, ObjectPath, as_location

REPLAYS = "replays"
# The tables (= folders) of a replay cache and the schema of each.
LEGACY_ROUTING = "routing"  # format 1 (corpus/routing_format.py)
STEP_TIER = ("routing_steps", "routing_segments")
TOKEN_TIER = SOURCE_TABLES["replay"]
TOKEN_SURPRISAL_TABLE = "token_surprisal"  # not required of a complete replay: older replays do not have it
CACHE_TABLES: dict[str, pa.Schema] = {
    "steps": REPLAY_STEPS,
    "routing_steps": ROUTING_STEPS,
    "routing_segments": ROUTING_SEGMENTS,
    SOURCE_TABLES["replay"]: ROUTING_TOKENS,
    SOURCE_TABLES["rollout"]: ROUTING_TOKENS,
    TOKEN_SURPRISAL_TABLE: TOKEN_SURPRISAL,
    LEGACY_ROUTING: ROUTING,
    "rollout_compare": ROLLOUT_COMPARE,
    "rollout_compare_steps": ROLLOUT_COMPARE_STEPS,
}
# The rollout's own table and the comparison derived from it and the replay. A replay written again keeps
# the rollout but drops the comparison (it was made against the old replay); a rollout imported again
# replaces all three.
ROLLOUT_TABLES = (SOURCE_TABLES["rollout"], "rollout_compare", "rollout_compare_steps")
COMPARE_TABLES = ROLLOUT_TABLES[1:]
# The views over every checkpoint's replay cache (each with a checkpoint_id column).
REPLAY_VIEWS = ("replay_steps", "routing", "routing_steps", "routing_segments", "routing_rollout", *COMPARE_TABLES)
CHECKPOINT_META = "checkpoint.json"
# How the replayed trajectories were chosen (`replay --sample`): a record beside the checkpoint meta.
SELECTION_META = "selection.json"
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
    return Dataset(replay_dir(corpus, checkpoint_id), tuple(CACHE_TABLES))


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
