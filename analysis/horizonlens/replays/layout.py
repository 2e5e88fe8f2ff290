"""The replay-cache layout, spelled out in one place: its folders, tables, views and manifest rules.

replays/<checkpoint_id>/manifest.json         the replay cache of one checkpoint: a dataset
replays/<checkpoint_id>/checkpoint.json       what the checkpoint was (architecture, experts, ...)
replays/<checkpoint_id>/selection.json        how the replayed runs were chosen (a random sample's record)
replays/<checkpoint_id>/<table>/*.parquet     replay results of that checkpoint, one folder per table
                                              (CACHE_TABLES; docs/corpus-format.md says what each holds)
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

from horizonlens.corpus.files import UPGRADE
from horizonlens.corpus.schema import (
    REPLAY_STEPS,
    ROLLOUT_COMPARE,
    ROLLOUT_COMPARE_STEPS,
    ROUTING_SEGMENTS,
    ROUTING_STEPS,
    ROUTING_TOKENS,
    TOKEN_SURPRISAL,
)
from horizonlens.errors import CorpusError
from horizonlens.replays.codec import FORMAT_VERSION, MAX_TOP_K, SOURCE_TABLES
from horizonlens.storage.access import Permission
from horizonlens.storage.dataset import Dataset
from horizonlens.storage.location import CorpusPath, ObjectPath, as_location
from horizonlens.storage.manifest import DataFile, ManifestRules, positive_int, read_json, string_list

REPLAYS = "replays"
# The tables (= folders) of a replay cache and the schema of each.
STEP_TIER = ("routing_steps", "routing_segments")
TOKEN_TIER = SOURCE_TABLES["replay"]
TOKEN_TABLES = tuple(SOURCE_TABLES.values())
TOKEN_SURPRISAL_TABLE = "token_surprisal"  # not required of a complete replay: older replays do not have it
CACHE_TABLES: dict[str, pa.Schema] = {
    "steps": REPLAY_STEPS,
    "routing_steps": ROUTING_STEPS,
    "routing_segments": ROUTING_SEGMENTS,
    SOURCE_TABLES["replay"]: ROUTING_TOKENS,
    SOURCE_TABLES["rollout"]: ROUTING_TOKENS,
    TOKEN_SURPRISAL_TABLE: TOKEN_SURPRISAL,
    "rollout_compare": ROLLOUT_COMPARE,
    "rollout_compare_steps": ROLLOUT_COMPARE_STEPS,
}
# Format 1 kept per-token rows in a table of this name; only `horizonlens migrate` reads it (replays/migrate.py).
FORMAT1_TABLE = "routing"
# The rollout's own table and the comparison derived from it and the replay. A replay written again keeps
# the rollout but drops the comparison (it was made against the old replay); a rollout imported again
# replaces all three.
ROLLOUT_TABLES = (SOURCE_TABLES["rollout"], "rollout_compare", "rollout_compare_steps")
COMPARE_TABLES = ROLLOUT_TABLES[1:]
CHECKPOINT_META = "checkpoint.json"
# How the replayed trajectories were chosen (`replay --sample`): a record beside the checkpoint meta.
SELECTION_META = "selection.json"
# A checkpoint id as Horizon Lens makes it (architecture-hash); ids found on disk must match it.
CHECKPOINT_ID = re.compile(r"^[a-z0-9_.-]{1,64}$")


def replays_dir(corpus: CorpusPath | str) -> CorpusPath:
    """The folder holding every checkpoint's replay cache."""
    return as_location(corpus) / REPLAYS


def replay_dir(corpus: CorpusPath | str, checkpoint_id: str) -> CorpusPath:
    """The replay cache of one checkpoint; refuses ids that could escape the corpus."""
    if not CHECKPOINT_ID.match(checkpoint_id):
        raise ValueError(f"not a checkpoint id: {checkpoint_id!r}")
    return replays_dir(corpus) / checkpoint_id


def _check_format(manifest: dict[str, Any], where: str) -> None:
    """A format-1 cache (a `routing` table of per-token rows) is recognised and sent to the upgrade."""
    files = manifest.get("files")
    if isinstance(files, list) and any(isinstance(f, dict) and f.get("table") == FORMAT1_TABLE for f in files):
        raise REPLAY_RULES.too_old(where, "a replay cache in routing format 1")


def _check_entry(entry: DataFile, manifest: dict[str, Any], where: str) -> None:
    """What a cache file's `meta` must hold: its trajectories, their notes, and for routing tokens their top-k."""
    at = f"{where}: {entry.path}"
    string_list(entry.meta.get("trajectories"), "'meta.trajectories'", at)
    for key in ("notes", "alignment"):
        value = entry.meta.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise CorpusError(f"{at}: 'meta.{key}' is not an object of objects")
    if entry.table in TOKEN_TABLES and entry.rows:
        checkpoint = manifest.get("checkpoint")
        experts = checkpoint.get("num_experts") if isinstance(checkpoint, dict) else None
        known = experts if isinstance(experts, int) and not isinstance(experts, bool) and experts > 0 else None
        limit = min(MAX_TOP_K, known) if known else MAX_TOP_K
        what = f"experts per token, of the checkpoint's {known}" if known else "experts per token"
        positive_int(entry.meta.get("top_k"), f"'meta.top_k' ({what})", limit, at)


REPLAY_RULES = ManifestRules(kind="replay cache", versions={"routing_format": (FORMAT_VERSION, None)},
                             upgrade=UPGRADE, check=_check_format, entry=_check_entry)


def replay_dataset(corpus: CorpusPath | str, checkpoint_id: str) -> Dataset:
    """The replay cache of one checkpoint as a dataset."""
    return Dataset(replay_dir(corpus, checkpoint_id), tuple(CACHE_TABLES), rules=REPLAY_RULES, write=Permission.REPLAY)


def new_cache(checkpoint_id: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest keys of a new replay cache (what `Dataset.transaction(create=...)` takes)."""
    return {"kind": "replay cache", "checkpoint_id": checkpoint_id, "routing_format": FORMAT_VERSION,
            **({"checkpoint": meta} if meta else {})}


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
    try:
        meta = read_json(replay_dir(corpus, checkpoint_id) / CHECKPOINT_META, limit=2**20)
    except CorpusError:
        return {}
    return meta if isinstance(meta, dict) else {}
