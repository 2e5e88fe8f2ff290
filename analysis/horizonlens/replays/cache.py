"""The replay cache inside a corpus: one dataset per checkpoint under replays/<checkpoint_id>/.

The checkpoint id hashes config, tokenizer and weights, so a changed checkpoint never reads stale
results. Replays are published by dataset commits (corpus/dataset.py): a batch of trajectories' per-step
rows and both routing tiers appear together or not at all, one file per table for the whole batch. Each
manifest entry records which trajectories its file holds (`meta.trajectories`) and each replay's notes,
including which routing tiers it stored (`routing`: tokens, steps, or none for a dense model), so "is this
trajectory cached?" is answered from the manifest without opening Parquet files. A cached file that is
missing or damaged makes `has()` answer False (nothing is deleted by asking); the next replay of that
trajectory replaces it.

Caches written before the two routing tiers (format 1: a `routing` table of per-token rows, one file per
trajectory) are read as they are; `horizonlens compact` converts them (model/compact.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from horizonlens.corpus.files import validate_file
from horizonlens.errors import CorpusError
from horizonlens.replays.codec import FORMAT_VERSION, SOURCE_TABLES, decode_token_table, write_options
from horizonlens.replays.layout import (
    CACHE_TABLES,
    CHECKPOINT_META,
    LEGACY_ROUTING,
    ROLLOUT_TABLES,
    SELECTION_META,
    STEP_TIER,
    TOKEN_SURPRISAL_TABLE,
    TOKEN_TIER,
    file_stem,
    replay_checkpoints,
    replay_dataset,
    replay_dir,
)
from horizonlens.storage.dataset import DataFile, Snapshot, Transaction, write_json_atomic
from horizonlens.storage.location import CorpusPath, as_location, read_schema, read_table

NOTE_KEYS = ("notes", "n_replayed", "n_rendered", "template", "routing")
SCHEMAS = CACHE_TABLES
TOKEN_TABLES = tuple(SOURCE_TABLES.values())


def _holds(entry: DataFile, trajectory_id: str) -> bool:
    ids = entry.meta.get("trajectories")
    if isinstance(ids, list):
        return trajectory_id in ids
    # a cache written before manifests: one file per trajectory, named after it
    return Path(entry.path).stem == file_stem(trajectory_id)


def _token_level(notes: dict[str, Any] | None) -> bool:
    """Does this replay have its token-level routing (format 1 always did; a dense model has none to have)?"""
    return (notes or {}).get("routing") in (None, "tokens", "none")


def required_tables(notes: dict[str, Any] | None, tokens: bool = False) -> tuple[str, ...]:
    """The tables a complete replay has, from its notes (`tokens`: the token tier is wanted too).

    A replay without a `routing` note was written in format 1 (steps + per-token `routing` rows).
    """
    stored = (notes or {}).get("routing")
    if stored is None:
        return ("steps", LEGACY_ROUTING)
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
        dataset = replay_dataset(self.corpus, self.checkpoint_id)
        return dataset.snapshot() if dataset.exists() else dataset.snapshot({})

    def entries(self, trajectory_id: str, snapshot: Snapshot | None = None) -> dict[str, list[DataFile]]:
        """Per table, the cached files that hold this trajectory."""
        snap = snapshot or self.snapshot()
        return {table: [e for e in snap.table(table) if _holds(e, trajectory_id)] for table in SCHEMAS}

    def notes_of(self, trajectory_id: str, snapshot: Snapshot | None = None) -> dict[str, Any] | None:
        """The manifest notes of this trajectory's replay (None for a format-1 or uncached one)."""
        snap = snapshot or self.snapshot()
        for e in snap.table("steps"):
            notes = (e.meta.get("notes") or {}).get(trajectory_id) if _holds(e, trajectory_id) else None
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
                    validate_file(snap.root / e.path, SCHEMAS[table], e.bytes if snap.listed else None)
        except CorpusError:
            return False
        return True

    def write(self, result: ReplayResult, meta: dict[str, Any] | None = None) -> None:
        """Publish one trajectory's replay (replacing an older or damaged one) in one commit."""
        self.write_many([result], meta)

    def write_tables(self, trajectory_id: str, tables: dict[str, pa.Table], notes: dict[str, str],
                     meta: dict[str, Any] | None = None) -> None:
        """Publish the replay tables of one trajectory (the engine-independent part of `write`)."""
        self.write_batch({trajectory_id: (tables, notes)}, meta)

    def write_many(self, results: Sequence[ReplayResult], meta: dict[str, Any] | None = None) -> None:
        """Publish the replays of many trajectories in one commit, one file per table for all of them."""
        self.write_batch({r.trajectory_id: (r.tables(), r.cache_notes()) for r in results}, meta)

    def write_batch(self, batch: dict[str, tuple[dict[str, pa.Table], dict[str, str]]],
                    meta: dict[str, Any] | None = None) -> None:
        """Publish {trajectory_id: (tables by name, notes)} in one commit.

        Each table becomes one file that holds every trajectory of the batch; older replays of these
        trajectories are replaced. Tables are named as in `corpus.layout.CACHE_TABLES`.
        """
        if not batch:
            return
        dataset = replay_dataset(self.corpus, self.checkpoint_id)
        create = {"kind": "replay cache", "checkpoint_id": self.checkpoint_id, **({"checkpoint": meta} if meta else {})}
        with dataset.transaction(create=create) as txn:
            if meta is not None and not (self.root / CHECKPOINT_META).exists():
                write_json_atomic(meta, self.root / CHECKPOINT_META)
            # a replay replaces everything the cache had of these trajectories (a rerun with --routing steps
            # must not leave stale token rows); importing a rollout replaces only the rollout
            written = {table for tables, _ in batch.values() for table in tables}
            rollout = {SOURCE_TABLES["rollout"]}
            self._drop(txn, list(batch), rollout if written <= rollout else set(SCHEMAS) - rollout)
            write_batch_files(txn, batch)
            txn.commit()

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
            value = json.loads((self.root / SELECTION_META).read_text(encoding="utf-8"))
        except (OSError, ValueError, CorpusError):
            return None
        return value if isinstance(value, dict) else None

    def drop(self, trajectory_ids: Iterable[str]) -> int:
        """Remove these trajectories from the cache (e.g. when their steps were replaced); returns files changed."""
        dataset = replay_dataset(self.corpus, self.checkpoint_id)
        if not dataset.exists() and not self.root.is_dir():
            return 0
        with dataset.transaction(create={"kind": "replay cache", "checkpoint_id": self.checkpoint_id}) as txn:
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
        only = set(SCHEMAS if tables is None else tables)
        changed = 0
        snap = txn.snapshot
        for entry in [f for f in (*snap.files, *txn.added) if f.path not in txn.removed]:
            if entry.table not in only:
                continue
            ids = entry.meta.get("trajectories")
            holds = [t for t in wanted if _holds(entry, t)] if not isinstance(ids, list) else \
                [t for t in ids if t in wanted]
            if not holds:
                continue
            changed += 1
            txn.remove([entry])
            others = [t for t in ids if t not in wanted] if isinstance(ids, list) else []
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

    def _read(self, trajectory_id: str, table: str) -> pa.Table | None:
        snap = self.snapshot()
        entries = self.entries(trajectory_id, snap)[table]
        if not entries or not self.has(trajectory_id):
            return None
        parts = []
        for e in entries:
            data = read_table(snap.root / e.path, filters=[("trajectory_id", "=", trajectory_id)])
            parts.append(data.replace_schema_metadata(None))
        return pa.concat_tables(parts)

    def read_steps(self, trajectory_id: str) -> pa.Table | None:
        """The cached per-step rows of one trajectory, or None."""
        return self._read(trajectory_id, "steps")

    def read_routing(self, trajectory_id: str) -> pa.Table | None:
        """The cached per-token routing rows of one trajectory, decoded (the `routing` view's columns), or None.

        None also when the replay stored only the step tier.
        """
        tokens = self._read(trajectory_id, TOKEN_TIER)
        if tokens is not None:
            return decode_token_table(tokens)
        return self._read(trajectory_id, LEGACY_ROUTING)

    def read_token_surprisal(self, trajectory_id: str) -> pa.Table | None:
        """Per-token surprisal and top-1 of one trajectory's replay (TOKEN_SURPRISAL rows), or None.

        None also for a replay written before this table existed: replay the trajectory again to get it.
        """
        return self._read(trajectory_id, TOKEN_SURPRISAL_TABLE)

    def read_routing_steps(self, trajectory_id: str) -> pa.Table | None:
        """The cached step tier of one trajectory (`routing_steps` rows as stored), or None."""
        return self._read(trajectory_id, "routing_steps")

    def write_rollouts(self, batches: Iterable[tuple[dict[str, dict[str, pa.Table]], dict[str, dict[str, Any]]]]
                       ) -> int:
        """Publish rollout routing (`rollout_tokens`) and/or its comparison with the replay in one commit.

        `batches` yields ({trajectory_id: {table: rows}}, {trajectory_id: alignment}) with tables from
        `corpus.layout.ROLLOUT_TABLES`; it may be a generator, so a large import holds one batch in memory at a
        time. Each batch becomes one file per table. The older rows of these trajectories in the tables given are
        replaced (a batch of comparisons alone leaves the stored rollouts as they are); the alignment of each
        trajectory is kept in the manifest entry of its `rollout_tokens` file. Nothing is published if the
        iteration raises. Returns the number of trajectories written.
        """
        dataset = replay_dataset(self.corpus, self.checkpoint_id)
        written = 0
        with dataset.transaction(create={"kind": "replay cache", "checkpoint_id": self.checkpoint_id}) as txn:
            for batch, alignment in batches:
                tables = [t for t in ROLLOUT_TABLES if any(t in parts for parts in batch.values())]
                self._drop(txn, list(batch), tables)  # files of the snapshot this transaction started from
                for table in tables:
                    holders = [tid for tid, parts in batch.items() if table in parts]
                    meta: dict[str, Any] = {"trajectories": holders}
                    if table == SOURCE_TABLES["rollout"]:
                        meta["alignment"] = {tid: alignment[tid] for tid in holders if tid in alignment}
                    data = pa.concat_tables([batch[tid][table] for tid in holders], promote_options="permissive")
                    if table in TOKEN_TABLES and data.num_rows:  # the views need the list length to decode
                        meta["top_k"] = int(pc.list_value_length(data["experts"])[0].as_py())
                    txn.write(table, data, meta=meta, options=write_options(table))
                written += len(batch)
            if written:
                txn.commit()
        return written

    def read_rollout(self, trajectory_id: str) -> pa.Table | None:
        """The stored rollout routing of one trajectory, decoded (the `routing_rollout` view's columns), or None."""
        tokens = self._read_any(trajectory_id, SOURCE_TABLES["rollout"])
        return decode_token_table(tokens) if tokens is not None else None

    def rollout_alignment(self, trajectory_id: str) -> dict[str, Any]:
        """How the stored rollout of one trajectory was aligned with the replay ({} if none is stored)."""
        for e in self.entries(trajectory_id)[SOURCE_TABLES["rollout"]]:
            found = (e.meta.get("alignment") or {}).get(trajectory_id)
            if isinstance(found, dict):
                return found
        return {}

    def rollout_ids(self) -> set[str]:
        """Trajectories with rollout routing stored in this cache."""
        ids: set[str] = set()
        for e in self.snapshot().table(SOURCE_TABLES["rollout"]):
            ids.update(t for t in e.meta.get("trajectories") or [] if isinstance(t, str))
        return ids

    def _read_any(self, trajectory_id: str, table: str) -> pa.Table | None:
        """Rows of one trajectory from one table, whether or not its replay is complete (None if absent)."""
        snap = self.snapshot()
        entries = self.entries(trajectory_id, snap)[table]
        if not entries:
            return None
        return pa.concat_tables([read_table(snap.root / e.path, filters=[("trajectory_id", "=", trajectory_id)])
                                 .replace_schema_metadata(None) for e in entries])

    def read_notes(self, trajectory_id: str) -> dict[str, str]:
        """What the replay noted (truncation, cut fields, template) — from the manifest entry."""
        snap = self.snapshot()
        for e in self.entries(trajectory_id, snap)["steps"]:
            notes = (e.meta.get("notes") or {}).get(trajectory_id)
            if isinstance(notes, dict):
                return {k: str(v) for k, v in notes.items() if k in NOTE_KEYS}
            if not snap.listed:  # an old cache kept its notes in the file's schema metadata
                try:
                    raw = read_schema(snap.root / e.path).metadata or {}
                except (OSError, pa.ArrowException):
                    return {}
                return {k.decode(): v.decode() for k, v in raw.items() if k.decode() in NOTE_KEYS}
        return {}

    def cached_ids(self, tokens: bool = False) -> set[str]:
        """Trajectories with a replay in this cache (`tokens`: only those whose token tier is stored too)."""
        snap = self.snapshot()
        ids: set[str] = set()
        for e in snap.table("steps"):
            listed = e.meta.get("trajectories")
            if isinstance(listed, list):
                notes = e.meta.get("notes") or {}
                ids.update(t for t in listed if not tokens or _token_level(notes.get(t)))
                continue
            try:
                ids.update(read_table(snap.root / e.path, columns=["trajectory_id"]).column(0).unique().to_pylist())
            except (OSError, pa.ArrowException):
                continue
        return ids


def write_batch_files(txn: Transaction, batch: dict[str, tuple[dict[str, pa.Table], dict[str, str]]]) -> None:
    """Inside a transaction: write {trajectory_id: (tables, notes)} as one file per table for all of them.

    Each manifest entry lists the file's trajectories and their notes; token-tier entries also say how
    many experts each token has (`top_k`), which the views need to decode them.
    """
    meta = {"trajectories": list(batch), "notes": {tid: notes for tid, (_, notes) in batch.items()}}
    for table in SCHEMAS:
        parts = [tables[table] for tables, _ in batch.values() if table in tables]
        if not parts:
            continue
        data = pa.concat_tables(parts, promote_options="permissive")
        extra = {"top_k": int(pc.list_value_length(data["experts"])[0].as_py())} \
            if table in TOKEN_TABLES and data.num_rows else {}
        txn.write(table, data, meta={**meta, **extra}, options=write_options(table))
    txn.update(routing_format=FORMAT_VERSION)


def list_checkpoints(corpus: CorpusPath | str) -> list[str]:
    """Checkpoint ids with a replay cache in this corpus."""
    return [c for c in replay_checkpoints(corpus) if ReplayCache(as_location(corpus), c).snapshot().table("steps")]
