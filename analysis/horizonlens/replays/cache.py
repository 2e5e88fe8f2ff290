"""The replay cache inside a corpus: one dataset per checkpoint under replays/<checkpoint_id>/.

The checkpoint id hashes config, tokenizer and weights, so a changed checkpoint never reads stale results.
Replays are published by dataset commits: a batch of trajectories' per-step rows and both routing tiers appear
together or not at all, one file per table for the whole batch. Each manifest entry records which trajectories
its file holds (`meta.trajectories`) and each replay's notes, including which routing tiers it stored
(`routing`: tokens, steps, or none for a dense model), so "is this trajectory cached?" is answered from the
manifest without opening Parquet files. A cached file that is missing or damaged makes `has()` answer False
(nothing is deleted by asking); the next replay of that trajectory replaces it.

Two writers: `write` publishes replays, `write_rollouts` an inference engine's routing and its comparison.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from horizonlens.corpus.files import validate_file
from horizonlens.errors import CorpusError
from horizonlens.replays.codec import FORMAT_VERSION, SOURCE_TABLES, decode_token_table, write_options
from horizonlens.replays.layout import (
    CACHE_TABLES,
    CHECKPOINT_META,
    ROLLOUT_TABLES,
    SELECTION_META,
    STEP_TIER,
    TOKEN_SURPRISAL_TABLE,
    TOKEN_TABLES,
    TOKEN_TIER,
    new_cache,
    replay_checkpoints,
    replay_dataset,
    replay_dir,
)
from horizonlens.storage.atomic import write_json_atomic
from horizonlens.storage.dataset import Snapshot, Transaction
from horizonlens.storage.location import CorpusPath, as_location, read_table
from horizonlens.storage.manifest import DataFile, read_json

NOTE_KEYS = ("notes", "n_replayed", "n_rendered", "template", "routing")
Batch = dict[str, tuple[dict[str, pa.Table], dict[str, str]]]  # trajectory_id -> (tables by name, notes)


def _holds(entry: DataFile, trajectory_id: str) -> bool:
    return trajectory_id in entry.meta.get("trajectories", ())


def _stored(notes: dict[str, Any] | None) -> str:
    """Which routing tiers a replay stored, from its notes: tokens, steps, or none (no note: none)."""
    return str((notes or {}).get("routing") or "none")


def required_tables(notes: dict[str, Any] | None, tokens: bool = False) -> tuple[str, ...]:
    """The tables a complete replay has, from its notes (`tokens`: the token tier is wanted too)."""
    stored = _stored(notes)
    if stored == "none":  # a dense model: nothing to route
        return ("steps",)
    # asked for the token tier of a replay that did not store it: require it anyway, so it counts as missing
    return ("steps", *STEP_TIER, *((TOKEN_TIER,) if tokens or stored == "tokens" else ()))


class ReplayResult(Protocol):
    """What the cache needs of a replay (model.replay.ReplayResult): its trajectory, tables and notes."""

    trajectory_id: str

    def tables(self) -> dict[str, pa.Table]:
        """The replay tables by name (replays.layout.CACHE_TABLES)."""
        ...

    def cache_notes(self) -> dict[str, str]:
        """Notes kept with the replay (truncation, dropped pieces)."""
        ...


@dataclass(frozen=True)
class StoredReplay:
    """A replay's tables and notes as the cache stores them (a ReplayResult made of tables, not of a model run)."""

    trajectory_id: str
    parts: dict[str, pa.Table]
    notes: dict[str, str] = field(default_factory=dict)

    def tables(self) -> dict[str, pa.Table]:
        """The replay tables by name."""
        return self.parts

    def cache_notes(self) -> dict[str, str]:
        """The replay's notes."""
        return self.notes


@dataclass
class ReplayCache:
    """The cache of one checkpoint's replays inside one corpus."""

    corpus: CorpusPath
    checkpoint_id: str

    @property
    def root(self) -> CorpusPath:
        """The cache folder of this checkpoint."""
        return replay_dir(self.corpus, self.checkpoint_id)

    def snapshot(self) -> Snapshot:
        """The published state of this cache (empty if nothing was cached yet)."""
        return replay_dataset(self.corpus, self.checkpoint_id).snapshot(missing_ok=True)

    def entries(self, trajectory_id: str, snapshot: Snapshot | None = None) -> dict[str, list[DataFile]]:
        """Per table, the cached files that hold this trajectory."""
        snap = snapshot or self.snapshot()
        return {table: [e for e in snap.table(table) if _holds(e, trajectory_id)] for table in CACHE_TABLES}

    def notes_of(self, trajectory_id: str, snapshot: Snapshot | None = None) -> dict[str, Any] | None:
        """The manifest notes of this trajectory's replay (None for an uncached one)."""
        snap = snapshot or self.snapshot()
        for e in snap.table("steps"):
            notes = e.meta.get("notes", {}).get(trajectory_id) if _holds(e, trajectory_id) else None
            if isinstance(notes, dict):
                return notes
        return None

    def has(self, trajectory_id: str, tokens: bool = False) -> bool:
        """True when a complete, readable replay of this trajectory is cached.

        `tokens`: also require the token tier (a replay stored with `--routing steps` then does not count).
        """
        snap = self.snapshot()
        found = self.entries(trajectory_id, snap)
        if not found["steps"]:
            return False
        needed = required_tables(self.notes_of(trajectory_id, snap), tokens)
        if not all(found[t] for t in needed):
            return False
        try:
            for table in needed:
                for e in found[table]:
                    validate_file(snap.root / e.path, CACHE_TABLES[table], e.bytes)
        except CorpusError:
            return False
        return True

    def write(self, replays: Sequence[ReplayResult], meta: dict[str, Any] | None = None) -> None:
        """Publish the replays of these trajectories in one commit, one file per table for all of them.

        Older replays of these trajectories are replaced (a rerun with --routing steps leaves no stale token
        rows; the comparison with a rollout goes, the rollout stays). `meta`: what the checkpoint is, recorded
        with the cache's first replay.
        """
        batch: Batch = {r.trajectory_id: (r.tables(), r.cache_notes()) for r in replays}
        if not batch:
            return
        dataset = replay_dataset(self.corpus, self.checkpoint_id)
        with dataset.transaction(create=new_cache(self.checkpoint_id, meta)) as txn:
            if meta is not None and not (self.root / CHECKPOINT_META).exists():
                write_json_atomic(meta, self.root / CHECKPOINT_META)
            self._drop(txn, list(batch), set(CACHE_TABLES) - {SOURCE_TABLES["rollout"]})
            write_batch_files(txn, batch)
            txn.commit()

    def write_rollouts(self, batches: Iterable[tuple[dict[str, dict[str, pa.Table]], dict[str, dict[str, Any]]]]
                       ) -> int:
        """Publish rollout routing (`rollout_tokens`) and/or its comparison with the replay in one commit.

        `batches` yields ({trajectory_id: {table: rows}}, {trajectory_id: alignment}) with tables from
        `replays.layout.ROLLOUT_TABLES`; it may be a generator, so a large import holds one batch in memory at a
        time. Each batch becomes one file per table. The older rows of these trajectories in the tables given are
        replaced (a batch of comparisons alone leaves the stored rollouts as they are); the alignment of each
        trajectory is kept in the manifest entry of its `rollout_tokens` file. Nothing is published if the
        iteration raises. Returns the number of trajectories written.
        """
        dataset = replay_dataset(self.corpus, self.checkpoint_id)
        written = 0
        with dataset.transaction(create=new_cache(self.checkpoint_id)) as txn:
            for batch, alignment in batches:
                tables = [t for t in ROLLOUT_TABLES if any(t in parts for parts in batch.values())]
                self._drop(txn, list(batch), tables)  # files of the snapshot this transaction started from
                for table in tables:
                    holders = [tid for tid, parts in batch.items() if table in parts]
                    meta: dict[str, Any] = {"trajectories": holders}
                    if table == SOURCE_TABLES["rollout"]:
                        meta["alignment"] = {tid: alignment[tid] for tid in holders if tid in alignment}
                    _write_file(txn, table, [batch[tid][table] for tid in holders], meta)
                written += len(batch)
            if written:
                txn.commit()
        return written

    def write_selection(self, record: dict[str, Any]) -> None:
        """Record how the replayed runs were chosen (a stratified random sample: method, seed, strata, ids).

        Kept beside the checkpoint meta, outside the manifest, so rewriting or compacting the cache keeps it;
        a new record replaces the old one.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(record, self.root / SELECTION_META)

    def read_selection(self) -> dict[str, Any] | None:
        """The selection record (None when none was written or it cannot be read)."""
        try:
            value = read_json(self.root / SELECTION_META)
        except CorpusError:
            return None
        return value if isinstance(value, dict) else None

    def drop(self, trajectory_ids: Iterable[str]) -> int:
        """Remove these trajectories from the cache (e.g. when their steps were replaced); returns files changed."""
        dataset = replay_dataset(self.corpus, self.checkpoint_id)
        if not dataset.exists():
            return 0
        with dataset.transaction() as txn:
            changed = self._drop(txn, list(trajectory_ids))
            if changed:
                txn.commit()
        return changed

    def _drop(self, txn: Transaction, trajectory_ids: list[str], tables: Iterable[str] | None = None) -> int:
        """Inside a transaction: leave these trajectories out of `tables` (default: all).

        Files that hold other trajectories too are rewritten without these. Files this transaction already
        wrote or removed count as such, so a transaction may drop several times (write_rollouts, batch by batch).
        """
        wanted = set(trajectory_ids)
        only = set(CACHE_TABLES if tables is None else tables)
        changed = 0
        snap = txn.snapshot
        for entry in [f for f in (*snap.files, *txn.added) if f.path not in txn.removed]:
            ids = entry.meta.get("trajectories", [])
            if entry.table not in only or not wanted.intersection(ids):
                continue
            changed += 1
            txn.remove([entry])
            others = [t for t in ids if t not in wanted]
            if others:
                try:
                    data = read_table(snap.root / entry.path)
                except (OSError, pa.ArrowException):
                    continue  # a damaged shared file: its other trajectories are replayed again on demand
                keep = data.filter(pc.is_in(data["trajectory_id"], value_set=pa.array(others)))
                kept: dict[str, Any] = {key: {t: v for t, v in (entry.meta.get(key) or {}).items() if t in others}
                                        for key in ("notes", "alignment") if key in entry.meta or key == "notes"}
                txn.write(entry.table, keep, meta={**entry.meta, "trajectories": others, **kept},
                          options=write_options(entry.table))
        return changed

    def rows(self, trajectory_id: str, table: str, snapshot: Snapshot | None = None,
             step: int | None = None) -> pa.Table | None:
        """One trajectory's rows of one table as stored, whether or not its replay is complete (None if absent).

        `step`: only that step's rows (row groups of other steps are skipped by their statistics).
        """
        snap = snapshot or self.snapshot()
        entries = self.entries(trajectory_id, snap)[table]
        if not entries:
            return None
        where = [("trajectory_id", "=", trajectory_id), *([("step", "=", int(step))] if step is not None else [])]
        return pa.concat_tables([read_table(snap.root / e.path, filters=where).replace_schema_metadata(None)
                                 for e in entries], promote_options="permissive")

    def _read(self, trajectory_id: str, table: str, step: int | None = None) -> pa.Table | None:
        """Rows of one table of a complete replay (None if it is not cached, or not whole); `step` as in `rows`."""
        snap = self.snapshot()
        if not self.entries(trajectory_id, snap)[table] or not self.has(trajectory_id):
            return None
        return self.rows(trajectory_id, table, snap, step)

    def read_steps(self, trajectory_id: str) -> pa.Table | None:
        """The cached per-step rows of one trajectory, or None."""
        return self._read(trajectory_id, "steps")

    def read_routing(self, trajectory_id: str) -> pa.Table | None:
        """The cached per-token routing rows of one trajectory, decoded (the `routing` view's columns), or None.

        None also when the replay stored only the step tier.
        """
        tokens = self._read(trajectory_id, TOKEN_TIER)
        return decode_token_table(tokens) if tokens is not None else None

    def read_token_surprisal(self, trajectory_id: str, step: int | None = None) -> pa.Table | None:
        """Per-token surprisal and top-1 of one trajectory's replay (TOKEN_SURPRISAL rows), or None.

        `step`: only that step's tokens. None also for a replay written before this table existed: replay the
        trajectory again to get it.
        """
        return self._read(trajectory_id, TOKEN_SURPRISAL_TABLE, step)

    def read_routing_steps(self, trajectory_id: str) -> pa.Table | None:
        """The cached step tier of one trajectory (`routing_steps` rows as stored), or None."""
        return self._read(trajectory_id, "routing_steps")

    def read_rollout(self, trajectory_id: str) -> pa.Table | None:
        """The stored rollout routing of one trajectory, decoded (the `routing_rollout` view's columns), or None."""
        tokens = self.rows(trajectory_id, SOURCE_TABLES["rollout"])
        return decode_token_table(tokens) if tokens is not None else None

    def rollout_alignment(self, trajectory_id: str) -> dict[str, Any]:
        """How the stored rollout of one trajectory was aligned with the replay ({} if none is stored)."""
        for e in self.entries(trajectory_id)[SOURCE_TABLES["rollout"]]:
            found = e.meta.get("alignment", {}).get(trajectory_id)
            if isinstance(found, dict):
                return found
        return {}

    def rollout_ids(self) -> set[str]:
        """Trajectories with rollout routing stored in this cache."""
        return {t for e in self.snapshot().table(SOURCE_TABLES["rollout"]) for t in e.meta["trajectories"]}

    def read_notes(self, trajectory_id: str) -> dict[str, str]:
        """What the replay noted (truncation, cut fields, template) — from the manifest entry."""
        notes = self.notes_of(trajectory_id) or {}
        return {k: str(v) for k, v in notes.items() if k in NOTE_KEYS}

    def cached_ids(self, tokens: bool = False) -> set[str]:
        """Trajectories with a replay in this cache (`tokens`: only those whose token tier is stored too)."""
        ids: set[str] = set()
        for e in self.snapshot().table("steps"):
            notes = e.meta.get("notes", {})
            ids.update(t for t in e.meta["trajectories"] if not tokens or _stored(notes.get(t)) != "steps")
        return ids


def _write_file(txn: Transaction, table: str, parts: list[pa.Table], meta: dict[str, Any]) -> None:
    """One file of a cache table.

    A token-tier file also records its experts per token (`top_k`), which the views need to decode it.
    """
    data = pa.concat_tables(parts, promote_options="permissive")
    if table in TOKEN_TABLES and data.num_rows:
        meta = {**meta, "top_k": int(pc.list_value_length(data["experts"])[0].as_py())}
    txn.write(table, data, meta=meta, options=write_options(table))


def write_batch_files(txn: Transaction, batch: Batch, alignment: dict[str, dict[str, Any]] | None = None) -> None:
    """Inside a transaction: write {trajectory_id: (tables, notes)} as one file per table for all of them.

    Each manifest entry lists the file's trajectories and their notes; the rollout's also how each trajectory's
    rollout was aligned with the replay (`alignment`, as `write_rollouts` records it).
    """
    meta: dict[str, Any] = {"trajectories": list(batch), "notes": {tid: notes for tid, (_, notes) in batch.items()}}
    for table in CACHE_TABLES:
        parts = [tables[table] for tables, _ in batch.values() if table in tables]
        if not parts:
            continue
        extra = {"alignment": {t: a for t, a in (alignment or {}).items() if t in batch}} \
            if table == SOURCE_TABLES["rollout"] and alignment else {}
        _write_file(txn, table, parts, {**meta, **extra})
    txn.update(routing_format=FORMAT_VERSION)


def list_checkpoints(corpus: CorpusPath | str) -> list[str]:
    """Checkpoint ids with a replay cache in this corpus."""
    out = []
    for ckpt in replay_checkpoints(corpus):
        try:
            if ReplayCache(as_location(corpus), ckpt).snapshot().table("steps"):
                out.append(ckpt)
        except CorpusError:
            continue  # an unreadable cache is reported where the corpus is opened
    return out
