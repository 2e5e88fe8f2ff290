"""Putting an engine's rollout routing onto the corpus: which trajectory, and which of its replay tokens.

After `rollout_files` has read and checked the records, each one is matched to a corpus trajectory
(`resolve_ids`), then its token ids are aligned with the replay's rendering of that trajectory
(`align_rollout`): position by position when they are equal, else by matching blocks
(`horizonlens.model.align`). Only tokens that are the same token on both sides, and that the engine
returned routing for, are kept; their routing is stored on the replay's token positions, so the
comparison is a join on (trajectory, token, layer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from horizonlens.ingest.formats.openai_chat import tau_bench_id
from horizonlens.ingest.readers import Problem
from horizonlens.model.align import align_tokens
from horizonlens.model.render import Rendered

if TYPE_CHECKING:
    from horizonlens.model.rollout_files import RolloutRef, RolloutRouting
    from horizonlens.query.store import CorpusStore


@dataclass
class Reference:
    """The replay's rendering of one trajectory: the token ids the rollout is aligned to, with step and segment."""

    token_ids: np.ndarray  # (N,) int64
    steps: np.ndarray  # (N,) int32
    segments: np.ndarray  # (N,) str

    @classmethod
    def from_rendered(cls, rendered: Rendered) -> Reference:
        """From `render()` (the same rendering a replay with the default settings runs on)."""
        return cls(rendered.token_ids.astype(np.int64), rendered.steps.astype(np.int32),
                   rendered.segments.astype(str))


@dataclass
class AlignedRollout:
    """One trajectory's rollout routing on the replay's token positions (only tokens both sides share)."""

    trajectory_id: str
    token_index: np.ndarray  # (M,) int32: positions in the replay's rendering
    token_ids: np.ndarray  # (M,) int32
    steps: np.ndarray  # (M,) int32
    segments: np.ndarray  # (M,) str
    experts: np.ndarray  # (M, MoE layers, top_k) int16: the engine's choice, no -1 left
    stats: dict[str, Any] = field(default_factory=dict)  # alignment figures, stored with the rows (see `align_rollout`)


def align_rollout(rollout: RolloutRouting, reference: Reference) -> AlignedRollout:
    """Align a rollout's token ids with the replay's rendering and keep its routed, aligned tokens.

    `stats`: tokens (the rollout's token ids), routed (of them, with routing from the engine), aligned
    (routed tokens found in the rendering), aligned_share = aligned / routed, reference_share = the share
    of the rendering those cover, identical (the ids are the rendering itself: compared position by
    position), plus where the record came from.
    """
    alignment = align_tokens(rollout.token_ids, reference.token_ids)
    ia, ib = alignment.pairs()
    routed = rollout.routed
    keep = routed[ia] if ia.size else np.zeros(0, bool)
    ia, ib = ia[keep], ib[keep]
    n_routed = int(routed.sum())
    stats = {"tokens": int(len(rollout.token_ids)), "routed": n_routed, "aligned": int(ia.size),
             "aligned_share": ia.size / n_routed if n_routed else 0.0,
             "reference_tokens": int(len(reference.token_ids)),
             "reference_share": ia.size / len(reference.token_ids) if len(reference.token_ids) else 0.0,
             "identical": alignment.identical, "blocks": len(alignment.blocks), "format": rollout.fmt,
             "file": rollout.file, "where": rollout.where}
    return AlignedRollout(rollout.trajectory_id, ib.astype(np.int32), reference.token_ids[ib].astype(np.int32),
                          reference.steps[ib].astype(np.int32), reference.segments[ib],
                          rollout.experts_at(ia).astype(np.int16), stats)


def id_candidates(ids: dict[str, str]) -> list[str]:
    """Corpus trajectory ids a record's id fields may stand for, most specific first.

    The importers name trajectories `<source>:<own id>` (`chat:<id>`, `swe-agent:<stem>`,
    `tau-bench:<task_id>:<trial>`, ...), the sample corpus `<task>-t<trial>`; a rollout file carries
    either the corpus id itself or the source's own id.
    """
    out: list[str] = []
    if ids.get("trajectory_id"):
        out.append(ids["trajectory_id"])
    task, trial = ids.get("task_id"), ids.get("trial")
    if task and trial is not None:
        out += [tau_bench_id(task, trial), f"{task}-t{trial}", f"{task}:{trial}"]
    for key in ("id", "instance_id", "session_id"):
        if ids.get(key):
            out += [ids[key], f"chat:{ids[key]}"]
    return list(dict.fromkeys(out))


def resolve_ids(store: CorpusStore, rollouts: list[RolloutRef]) -> tuple[list[RolloutRef], list[Problem]]:
    """Set each rollout's corpus trajectory id; records that match none, several, or a taken one are problems.

    Tried in order: the candidates of `id_candidates` that exist in the corpus; then a corpus id ending in
    `:<own id>` when exactly one does (the importers' `<source>:<own id>` names).
    """
    wanted = sorted({c for r in rollouts for c in id_candidates(r.ids)})
    known: set[str] = set()
    for start in range(0, len(wanted), 1000):
        part = wanted[start:start + 1000]
        known.update(store.query(f"SELECT trajectory_id FROM trajectories WHERE trajectory_id IN "
                                 f"({', '.join('?' for _ in part)})", part).column(0).to_pylist())
    good: list[RolloutRef] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for r in rollouts:
        match = next((c for c in id_candidates(r.ids) if c in known), None)
        if match is None:
            match, why = _by_suffix(store, r.ids)
            if match is None:
                problems.append(r.problem(why))
                continue
        if match in seen:
            problems.append(r.problem(f"trajectory {match!r} was already given by {seen[match]}; this one is "
                                      "left out"))
            continue
        seen[match] = f"{r.file}: {r.where}"
        r.trajectory_id = match
        good.append(r)
    return good, problems


def _by_suffix(store: CorpusStore, ids: dict[str, str]) -> tuple[str | None, str]:
    """A unique corpus id ending in ':<own id>', or None with the reason."""
    own = [ids[k] for k in ("trajectory_id", "id", "instance_id", "session_id") if ids.get(k)]
    if not own:
        return None, "the record has no trajectory_id (nor id, instance_id, or task_id and trial) to match"
    for value in own:
        hits = store.query("SELECT trajectory_id FROM trajectories WHERE ends_with(trajectory_id, ?) LIMIT 3",
                           [f":{value}"]).column(0).to_pylist()
        if len(hits) == 1:
            return hits[0], ""
        if len(hits) > 1:
            return None, f"id {value!r} matches several trajectories ({', '.join(map(repr, hits[:2]))}, ...); " \
                         "give the corpus trajectory_id"
    shown = ", ".join(f"{k}={v!r}" for k, v in ids.items())
    return None, f"no trajectory in the corpus matches {shown}"
