"""Which replayed runs a corpus-level model statistic uses, and how they were chosen.

Replays are often chosen to study failures, and a statistic over such a set is biased (an early-warning AUROC
over runs replayed *because* they failed says little about the corpus). So:

- `horizonlens replay --sample N --seed S` draws a **stratified random sample** (proportional to each
  domain x outcome stratum, random within it) and the replay cache records it (`ReplayCache.write_selection`);
- every corpus-level model statistic (early warning, routing by domain, probes, the routing map) asks
  `replay_scope` which runs to use: by default the sampled runs that are replayed, when a sample exists; else
  every replayed run, **flagged** as a set not drawn at random.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from horizonlens.metrics.replays import replayed_trajectories
from horizonlens.query.store import CorpusStore
from horizonlens.replays.cache import ReplayCache

STRATA = ("domain", "outcome")


def stratified_sample(candidates: pd.DataFrame, n: int, seed: int, strata: tuple[str, ...] = STRATA) -> list[str]:
    """N trajectory ids drawn at random within strata, each stratum getting its proportional share.

    Shares are rounded by largest remainder (ties: the stratum listed first), so they add up to n; within a
    stratum the ids are a seeded random choice. `candidates` has trajectory_id and the strata columns.
    """
    if n <= 0 or candidates.empty:
        return []
    n = min(int(n), len(candidates))
    frame = candidates.assign(**{c: candidates[c].fillna("(none)").astype(str) for c in strata})
    groups = frame.groupby(list(strata), sort=True)["trajectory_id"].apply(lambda s: sorted(s.astype(str)))
    sizes = np.array([len(g) for g in groups], dtype=float)
    exact = sizes / sizes.sum() * n
    take = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - take), kind="stable")[: n - int(take.sum())]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    chosen: list[str] = []
    for ids, k in zip(groups, take, strict=True):
        chosen += [ids[i] for i in sorted(rng.choice(len(ids), size=int(k), replace=False))]
    return sorted(chosen)


def selection_record(ids: list[str], n: int, seed: int, candidates: int, note: str = "") -> dict[str, Any]:
    """The record a sampled replay keeps: what was drawn, from how many, how."""
    return {"method": "stratified random sample", "strata": list(STRATA), "n": int(n), "seed": int(seed),
            "candidates": int(candidates), "trajectory_ids": sorted(ids), "note": note,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


@dataclass(frozen=True)
class ReplayScope:
    """The runs a corpus-level model statistic uses, and the sentence that says so."""

    trajectory_ids: list[str] | None  # None: every replayed run
    runs: int  # runs used
    replayed: int  # runs replayed in all
    random: bool  # drawn as a random sample (False: chosen by hand or by a filter; flag the statistic)
    how: str  # one sentence for the page


def recorded_sample(store: CorpusStore, checkpoint_id: str) -> dict[str, Any] | None:
    """The random sample recorded with this checkpoint's replays (`replay --sample`), or None."""
    return ReplayCache(store.root, checkpoint_id).read_selection()


def replay_scope(store: CorpusStore, checkpoint_id: str, use_sample: bool = True,
                 record: dict[str, Any] | None = None) -> ReplayScope:
    """Which replayed runs to use: the recorded random sample's (by default, when there is one), else all of them.

    `record`: the sample record when the caller has read it (`recorded_sample`), e.g. to key a cache on it.
    """
    replayed = replayed_trajectories(store, checkpoint_id)
    record = record if record is not None else recorded_sample(store, checkpoint_id)
    sampled = sorted(set(record.get("trajectory_ids") or []) & set(replayed)) if record else []
    if record and use_sample and sampled:
        drawn = len(record.get("trajectory_ids") or [])
        missing = f"; {drawn - len(sampled)} of them not replayed yet" if drawn > len(sampled) else ""
        return ReplayScope(sampled, len(sampled), len(replayed), True,
                           f"{len(sampled):,} runs of the stratified random sample (seed {record.get('seed')}, by "
                           f"{' and '.join(record.get('strata') or STRATA)}, drawn from "
                           f"{int(record.get('candidates') or 0):,}){missing}; {len(replayed) - len(sampled):,} "
                           f"other replayed runs left out.")
    extra = (" A random sample is recorded but switched off here." if record and sampled else "")
    return ReplayScope(None, len(replayed), len(replayed), False,
                       f"All {len(replayed):,} replayed runs — chosen by hand or by a filter, not drawn at random, so "
                       f"statistics over them may be biased (`horizonlens replay CORPUS --sample N` draws a "
                       f"stratified random sample).{extra}")
