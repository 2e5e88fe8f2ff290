"""The replay cache inside a corpus: one dataset per checkpoint under replays/<checkpoint_id>/.

The checkpoint id hashes config, tokenizer and weights, so a changed checkpoint never reads stale
results. A replay is published by one dataset commit (corpus/dataset.py): its per-step rows and its
routing rows appear together or not at all. Each manifest entry records which trajectories its file
holds (`meta.trajectories`) and the replay's notes, so "is this trajectory cached?" is answered from the
manifest without opening Parquet files. A cached file that is missing or damaged makes `has()` answer
False (nothing is deleted by asking); the next replay of that trajectory replaces it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from horizonlens.corpus.dataset import DataFile, Snapshot, Transaction, write_json_atomic
from horizonlens.corpus.io import validate_file
from horizonlens.corpus.layout import (
    CHECKPOINT_META,
    REPLAY_VIEWS,
    file_stem,
    replay_checkpoints,
    replay_dataset,
    replay_dir,
)
from horizonlens.corpus.schema import REPLAY_TABLES
from horizonlens.corpus.storage import CorpusPath, as_location, read_schema, read_table
from horizonlens.errors import CorpusError

if TYPE_CHECKING:
    from horizonlens.model.replay import ReplayResult

NOTE_KEYS = ("notes", "n_replayed", "n_rendered", "template")
SCHEMAS = {table: REPLAY_TABLES[view] for view, table in REPLAY_VIEWS.items()}


def _holds(entry: DataFile, trajectory_id: str) -> bool:
    ids = entry.meta.get("trajectories")
    if isinstance(ids, list):
        return trajectory_id in ids
    # a cache written before manifests: one file per trajectory, named after it
    return Path(entry.path).stem == file_stem(trajectory_id)


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

    def has(self, trajectory_id: str) -> bool:
        """True when a complete, readable replay of this trajectory is cached."""
        snap = self.snapshot()
        found = self.entries(trajectory_id, snap)
        if not all(found.values()):
            return False
        try:
            for table, entries in found.items():
                for e in entries:
                    validate_file(snap.root / e.path, SCHEMAS[table], e.bytes if snap.listed else None)
        except CorpusError:
            return False
        return True

    def write(self, result: ReplayResult, meta: dict[str, Any] | None = None) -> None:
        """Publish one trajectory's replay (replacing an older or damaged one) in one commit."""
        notes = {"notes": "\n".join(result.notes), "n_replayed": str(result.n_replayed),
                 "n_rendered": str(len(result.rendered)), "template": result.rendered.template}
        self.write_tables(result.trajectory_id, {"steps": result.step_table(), "routing": result.routing_table()},
                          notes, meta)

    def write_tables(self, trajectory_id: str, tables: dict[str, pa.Table], notes: dict[str, str],
                     meta: dict[str, Any] | None = None) -> None:
        """Publish the replay tables of one trajectory (the engine-independent part of `write`)."""
        self.write_batch({trajectory_id: (tables, notes)}, meta)

    def write_many(self, results: list[ReplayResult], meta: dict[str, Any] | None = None) -> None:
        """Publish the replays of many trajectories in one commit, one file per table for all of them."""
        self.write_batch({r.trajectory_id: ({"steps": r.step_table(), "routing": r.routing_table()},
                                            {"notes": "\n".join(r.notes), "n_replayed": str(r.n_replayed),
                                             "n_rendered": str(len(r.rendered)), "template": r.rendered.template})
                          for r in results}, meta)

    def write_batch(self, batch: dict[str, tuple[dict[str, pa.Table], dict[str, str]]],
                    meta: dict[str, Any] | None = None) -> None:
        """Publish {trajectory_id: (tables by name, notes)} in one commit.

        Each table becomes one file that holds every trajectory of the batch; older replays of these
        trajectories are replaced.
        """
        if not batch:
            return
        dataset = replay_dataset(self.corpus, self.checkpoint_id)
        create = {"kind": "replay cache", "checkpoint_id": self.checkpoint_id, **({"checkpoint": meta} if meta else {})}
        with dataset.transaction(create=create) as txn:
            if meta is not None and not (self.root / CHECKPOINT_META).exists():
                write_json_atomic(meta, self.root / CHECKPOINT_META)
            self._drop(txn, list(batch))
            file_meta = {"trajectories": list(batch), "notes": {tid: notes for tid, (_, notes) in batch.items()}}
            for table in SCHEMAS:
                parts = [tables[table] for tables, _ in batch.values() if table in tables]
                if parts:
                    txn.write(table, pa.concat_tables(parts), meta=file_meta)
            txn.commit()

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

    def _drop(self, txn: Transaction, trajectory_ids: list[str]) -> int:
        """Inside a transaction: leave these trajectories out, rewriting files that hold others too."""
        wanted = set(trajectory_ids)
        changed = 0
        snap = txn.snapshot
        for entry in snap.files:
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
                notes = {t: n for t, n in (entry.meta.get("notes") or {}).items() if t in others}
                txn.write(entry.table, keep, meta={**entry.meta, "trajectories": others, "notes": notes})
        return changed

    def _read(self, trajectory_id: str, table: str) -> pa.Table | None:
        snap = self.snapshot()
        entries = self.entries(trajectory_id, snap)[table]
        if not entries or not self.has(trajectory_id):
            return None
        parts = []
        for e in entries:
            data = read_table(snap.root / e.path)
            if isinstance(e.meta.get("trajectories"), list) and len(e.meta["trajectories"]) > 1:
                data = data.filter(pc.equal(data["trajectory_id"], trajectory_id))
            parts.append(data.replace_schema_metadata(None))
        return pa.concat_tables(parts)

    def read_steps(self, trajectory_id: str) -> pa.Table | None:
        """The cached per-step rows of one trajectory, or None."""
        return self._read(trajectory_id, "steps")

    def read_routing(self, trajectory_id: str) -> pa.Table | None:
        """The cached per-token routing rows of one trajectory, or None."""
        return self._read(trajectory_id, "routing")

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

    def cached_ids(self) -> set[str]:
        """Trajectories with a replay in this cache."""
        snap = self.snapshot()
        ids: set[str] = set()
        for e in snap.table("steps"):
            listed = e.meta.get("trajectories")
            if isinstance(listed, list):
                ids.update(listed)
                continue
            try:
                ids.update(read_table(snap.root / e.path, columns=["trajectory_id"]).column(0).unique().to_pylist())
            except (OSError, pa.ArrowException):
                continue
        return ids


def list_checkpoints(corpus: CorpusPath | str) -> list[str]:
    """Checkpoint ids with a replay cache in this corpus."""
    return [c for c in replay_checkpoints(corpus) if ReplayCache(as_location(corpus), c).snapshot().table("steps")]
