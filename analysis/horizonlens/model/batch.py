"""Replaying trajectories of a corpus into its replay cache: the one path every engine shares.

A batch replay is planned once (`plan_replay`): trajectories already in the cache are skipped (so a run
that was killed resumes where it stopped), the rest are packed into batches balanced by token count,
longest first. Each batch is replayed trajectory by trajectory with `replay_batch` (the same call in the
local loop and in a Ray actor, see model/ray_engine.py) and published with one `ReplayCache.write`
commit: one file per table for the whole batch, visible all at once or not at all. Only the process that
planned the run (the driver) writes the cache.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable

from horizonlens.errors import ReplayError
from horizonlens.model.replay import ReplayConfig, ReplayResult, replay_trajectory
from horizonlens.replays.cache import ReplayCache

if TYPE_CHECKING:
    from horizonlens.model.loader import LoadedModel
    from horizonlens.query.store import CorpusStore

# Batch sizes in (estimated) tokens. Each batch becomes one commit of one file per table, so larger
# batches mean fewer files; smaller ones mean less work lost to a crash and results held in memory (at the
# Agents-A1 shape a token costs ~2 KB of routing in flight: 256k tokens ~ 0.5 GB).
MIN_BATCH_TOKENS = 2_048
MAX_BATCH_TOKENS = 262_144
BATCHES_PER_REPLICA = 4  # enough batches per worker that the last ones to finish are short


@dataclass(frozen=True)
class Batch:
    """Trajectories replayed and published together (one commit)."""

    trajectory_ids: tuple[str, ...]
    tokens: int  # the corpus's token estimate (trajectories.n_tokens), used for packing and progress


@dataclass
class ReplayPlan:
    """What a batch replay will do: the batches to run and what it skips."""

    batches: list[Batch]
    skipped: int  # asked for, but already in the cache
    tokens: int  # estimated tokens over all batches

    @property
    def trajectories(self) -> int:
        """Trajectories to replay."""
        return sum(len(b.trajectory_ids) for b in self.batches)


@dataclass(frozen=True)
class BatchDone:
    """One batch published to the cache (what a progress display shows)."""

    trajectories: int
    tokens: int  # estimated tokens of the batch (the unit of the plan's total)
    replayed_tokens: int  # tokens actually run through the model
    seconds: float  # wall time of the replay on its worker
    worker: str  # who replayed it ("local", or the Ray worker's pid)


@dataclass
class ReplayRun:
    """What a batch replay did."""

    replayed: int = 0
    skipped: int = 0
    batches: int = 0
    tokens: int = 0  # tokens run through the model
    seconds: float = 0.0  # wall time of the whole run
    workers: list[str] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        """Replay throughput over the whole run (startup included)."""
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def default_batch_tokens(total_tokens: int, replicas: int) -> int:
    """A batch size that gives each replica a few batches, within [MIN, MAX]_BATCH_TOKENS."""
    per = math.ceil(total_tokens / max(1, replicas * BATCHES_PER_REPLICA))
    return int(min(MAX_BATCH_TOKENS, max(MIN_BATCH_TOKENS, per)))


def pack_batches(sizes: Iterable[tuple[str, int]], batch_tokens: int) -> list[Batch]:
    """Pack trajectories into batches of at most `batch_tokens`, longest first.

    A trajectory longer than the budget is a batch of its own; the rest are packed next-fit in
    decreasing size, so the longest runs start first and the short ones fill the end (whoever is free
    takes the next batch: a 70k-token run never waits behind a queue of short ones, and the last batches
    to finish are small).
    """
    budget = max(1, int(batch_tokens))
    batches: list[Batch] = []
    current: list[str] = []
    tokens = 0
    for tid, n in sorted(sizes, key=lambda s: (-s[1], s[0])):
        n = max(1, int(n))
        if current and tokens + n > budget:
            batches.append(Batch(tuple(current), tokens))
            current, tokens = [], 0
        current.append(tid)
        tokens += n
    if current:
        batches.append(Batch(tuple(current), tokens))
    return batches


def token_estimates(store: "CorpusStore", trajectory_ids: list[str]) -> dict[str, int]:
    """The corpus's token estimate of each trajectory (trajectories.n_tokens)."""
    rows = store.query("SELECT trajectory_id, n_tokens FROM trajectories WHERE list_contains(?, trajectory_id)",
                       [trajectory_ids]).to_pylist()
    return {r["trajectory_id"]: int(r["n_tokens"] or 0) for r in rows}


def check_batch_tokens(batch_tokens: int | None) -> int | None:
    """The batch budget as given (None: chosen from the work); ReplayError if it is below one token."""
    if batch_tokens is not None and (isinstance(batch_tokens, bool) or batch_tokens < 1):
        raise ReplayError(f"--batch-tokens must be 1 or more, not {batch_tokens}")
    return batch_tokens


def plan_replay(store: "CorpusStore", checkpoint_id: str, trajectory_ids: Iterable[str], replicas: int = 1,
                batch_tokens: int | None = None, force: bool = False, tokens: bool = True) -> ReplayPlan:
    """Skip what the cache holds, pack the rest into token-balanced batches.

    `force`: skip nothing. `tokens`: a cached replay counts only with its token tier (`--routing tokens`).
    """
    check_batch_tokens(batch_tokens)
    wanted = list(dict.fromkeys(trajectory_ids))
    cached = set() if force else ReplayCache(store.root, checkpoint_id).cached_ids(tokens=tokens)
    todo = [t for t in wanted if t not in cached]
    sizes = token_estimates(store, todo)
    missing = [t for t in todo if t not in sizes]
    if missing:
        raise ReplayError(f"no trajectory {missing[0]!r} in {store.root}")
    total = sum(sizes.values())
    budget = default_batch_tokens(total, replicas) if batch_tokens is None else batch_tokens
    return ReplayPlan(pack_batches(sizes.items(), budget), skipped=len(wanted) - len(todo), tokens=total)


def batch_steps(store: "CorpusStore", batch: Batch) -> list[tuple[str, list[dict[str, Any]]]]:
    """The steps of each trajectory of a batch, as the replay takes them."""
    return [(tid, store.steps(tid).to_pylist()) for tid in batch.trajectory_ids]


def replay_batch(loaded: "LoadedModel", work: list[tuple[str, list[dict[str, Any]]]],
                 config: ReplayConfig | None = None) -> list[ReplayResult]:
    """Replay each trajectory of a batch (the call every engine makes, locally or in a Ray actor)."""
    out = []
    for tid, steps in work:
        if not steps:
            raise ReplayError(f"trajectory {tid!r} has no steps to replay")
        out.append(replay_trajectory(loaded, tid, steps, config))
    return out


def cache_meta(describe: dict[str, Any], config: ReplayConfig | None) -> dict[str, Any]:
    """What the cache records about the checkpoint with its first replay (`LoadedModel.describe()` + settings)."""
    from pathlib import PurePath

    # the directory name only: a cache committed with a corpus should not carry a local path
    return {**describe, "path": PurePath(str(describe.get("path", ""))).name,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "chunk_size": (config or ReplayConfig()).chunk_size}


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
    cache.write([result], cache_meta(loaded.describe(), config))
    store.refresh_replays()
    return True


def replay_many(store: "CorpusStore", loaded: "LoadedModel", trajectory_ids: Iterable[str],
                config: ReplayConfig | None = None, batch_tokens: int | None = None,
                on_batch: Callable[[BatchDone], None] | None = None, plan: ReplayPlan | None = None,
                force: bool = False) -> ReplayRun:
    """The local engine: replay what the cache lacks, batch by batch, in this process (resumable).

    `force`: replay every id, replacing what is cached.
    """
    started = time.perf_counter()
    plan = plan or plan_replay(store, loaded.checkpoint_id, trajectory_ids, batch_tokens=batch_tokens, force=force,
                               tokens=(config or ReplayConfig()).routing == "tokens")
    cache = ReplayCache(store.root, loaded.checkpoint_id)
    meta = cache_meta(loaded.describe(), config)
    run = ReplayRun(skipped=plan.skipped, workers=[f"local:{os.getpid()}"])
    for batch in plan.batches:
        t0 = time.perf_counter()
        results = replay_batch(loaded, batch_steps(store, batch), config)
        cache.write(results, meta)
        done = BatchDone(len(results), batch.tokens, sum(r.n_replayed for r in results),
                         time.perf_counter() - t0, run.workers[0])
        run.replayed += done.trajectories
        run.tokens += done.replayed_tokens
        run.batches += 1
        if on_batch:
            on_batch(done)
    if plan.batches:
        store.refresh_replays()
    run.seconds = time.perf_counter() - started
    return run
