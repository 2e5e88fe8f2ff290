"""Replaying trajectories of a corpus into its replay cache (used by the CLI and the app)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Iterable

from horizonlens.errors import ReplayError
from horizonlens.model.cache import ReplayCache
from horizonlens.model.replay import ReplayConfig, replay_trajectory

if TYPE_CHECKING:
    from horizonlens.corpus.store import CorpusStore
    from horizonlens.model.loader import LoadedModel


def ensure_replayed(store: "CorpusStore", loaded: "LoadedModel", trajectory_id: str,
                    config: ReplayConfig | None = None, force: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> bool:
    """Replay one trajectory into the cache unless a valid replay is there. True if it ran."""
    cache = ReplayCache(store.root, loaded.checkpoint_id)
    if not force and cache.has(trajectory_id, tokens=(config or ReplayConfig()).routing == "tokens"):
        return False
    steps = store.steps(trajectory_id).to_pylist()
    if not steps:
        raise ReplayError(f"no trajectory {trajectory_id!r} in {store.root}")
    result = replay_trajectory(loaded, trajectory_id, steps, config, progress)
    # the directory name only: a cache committed with a corpus should not carry a local path
    meta = {**loaded.describe(), "path": loaded.path.name,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "chunk_size": (config or ReplayConfig()).chunk_size}
    cache.write(result, meta)
    store.refresh_replays()
    return True


def replay_many(store: "CorpusStore", loaded: "LoadedModel", trajectory_ids: Iterable[str],
                config: ReplayConfig | None = None,
                on_done: Callable[[str, bool], None] | None = None, force: bool = False) -> tuple[int, int]:
    """Replay each id that is not cached yet (resumable; `force`: every id). Returns (replayed, skipped)."""
    replayed = skipped = 0
    for tid in trajectory_ids:
        ran = ensure_replayed(store, loaded, tid, config, force=force)
        replayed += ran
        skipped += not ran
        if on_done:
            on_done(tid, ran)
    return replayed, skipped
