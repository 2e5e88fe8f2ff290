"""`horizonlens compact`: rewrite a replay cache as a few large files, trajectories in id order.

A cache grows one commit per replay batch (the app replays one trajectory at a time). Compaction reads each
trajectory's rows through the cache's own readers and writes them again as multi-trajectory files of at most
COMPACT_ROWS token-tier rows (so DuckDB skips row groups by trajectory_id statistics), copying rows as they are
(never re-quantized) and keeping every note and rollout alignment. Each checkpoint is one dataset transaction, so
readers see the cache before or after, never half; a failure leaves it as it was. Local and s3:// corpora alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from horizonlens.errors import CorpusError
from horizonlens.replays.cache import NOTE_KEYS, Batch, ReplayCache, write_batch_files
from horizonlens.replays.codec import SOURCE_TABLES
from horizonlens.replays.layout import TOKEN_TIER, new_cache, replay_checkpoints, replay_dataset
from horizonlens.storage.dataset import Snapshot, Transaction
from horizonlens.storage.location import CorpusPath, as_location
from horizonlens.storage.manifest import DataFile

COMPACT_ROWS = 4_000_000  # token-tier rows per file: tens of MB at 40 layers x 256 experts, read a row group at a time
# (trajectory_id, its files by table) -> (its tables in the current format, its notes, whether it was converted)
ReadTrajectory = Callable[[str, dict[str, list[DataFile]]], tuple[dict[str, pa.Table], dict[str, str], bool]]


@dataclass
class CompactReport:
    """What compaction (or an upgrade) did to one checkpoint's cache."""

    checkpoint_id: str
    trajectories: int = 0
    converted: int = 0  # trajectories whose format-1 routing was converted (by `horizonlens migrate`)
    files_before: int = 0
    bytes_before: int = 0
    files_after: int = 0
    bytes_after: int = 0
    tables_after: dict[str, int] = field(default_factory=dict)  # bytes per table after

    def to_json(self) -> dict[str, Any]:
        """The report as printed by `horizonlens compact --json`."""
        return {k: getattr(self, k) for k in ("checkpoint_id", "trajectories", "converted", "files_before",
                                              "bytes_before", "files_after", "bytes_after", "tables_after")}


def compact(corpus: CorpusPath | str, checkpoint_id: str | None = None, max_rows: int = COMPACT_ROWS,
            log: Callable[[str], None] = lambda _: None) -> list[CompactReport]:
    """Compact every checkpoint's replay cache in `corpus` (or only `checkpoint_id`); one report each."""
    root = as_location(corpus)
    ids = replay_checkpoints(root)
    if checkpoint_id is not None:
        if checkpoint_id not in ids:
            raise CorpusError(f"{corpus}: no replay cache for checkpoint {checkpoint_id!r} (have: "
                              f"{', '.join(ids) or 'none'})")
        ids = [checkpoint_id]
    reports = []
    for ckpt in ids:
        cache = ReplayCache(root, ckpt)
        with replay_dataset(root, ckpt).transaction(create=new_cache(ckpt)) as txn:
            snap = txn.snapshot

            def read(tid: str, files: dict[str, list[DataFile]], cache: ReplayCache = cache, snap: Snapshot = snap
                     ) -> tuple[dict[str, pa.Table], dict[str, str], bool]:
                return _read_current(cache, snap, tid, files)

            reports.append(rewrite(txn, ckpt, list(snap.files), read, max_rows, log))
    return reports


def _read_current(cache: ReplayCache, snap: Snapshot, trajectory_id: str, files: dict[str, list[DataFile]]
                  ) -> tuple[dict[str, pa.Table], dict[str, str], bool]:
    """One trajectory's tables and notes through the cache's readers, as stored."""
    tables = {}
    for table in files:
        try:
            rows = cache.rows(trajectory_id, table, snap)
        except (OSError, pa.ArrowException, CorpusError) as exc:
            raise CorpusError(f"{cache.root / table}: cannot be read ({str(exc)[:200]}); nothing was changed. "
                              f"Replay {trajectory_id!r} again (horizonlens replay --force -t ID) and compact "
                              "after that") from exc
        if rows is not None:
            tables[table] = rows
    notes = {k: str(v) for k, v in (cache.notes_of(trajectory_id, snap) or {}).items() if k in NOTE_KEYS}
    return tables, notes, False


def rewrite(txn: Transaction, checkpoint_id: str, files: list[DataFile], read: ReadTrajectory,
            max_rows: int = COMPACT_ROWS, log: Callable[[str], None] = lambda _: None) -> CompactReport:
    """Inside a transaction: write every trajectory of `files` again, as `read` gives it, and drop `files`.

    Trajectories go in id order, in batches of about `max_rows` token-tier rows; the commit publishes them all.
    """
    report = CompactReport(checkpoint_id, files_before=len(files), bytes_before=sum(f.bytes for f in files))
    holders: dict[str, dict[str, list[DataFile]]] = {}
    for f in files:
        for tid in f.meta.get("trajectories", []):
            holders.setdefault(tid, {}).setdefault(f.table, []).append(f)
    report.trajectories = len(holders)
    batch: Batch = {}
    alignment: dict[str, dict[str, Any]] = {}
    rows = 0
    for tid in sorted(holders):
        tables, notes, converted = read(tid, holders[tid])
        report.converted += converted
        batch[tid] = (tables, notes)
        for e in holders[tid].get(SOURCE_TABLES["rollout"], []):
            found = e.meta.get("alignment", {}).get(tid)
            if isinstance(found, dict):
                alignment[tid] = found
        rows += tables[TOKEN_TIER].num_rows if TOKEN_TIER in tables else 0
        if rows >= max_rows:
            write_batch_files(txn, batch, alignment)
            log(f"{checkpoint_id}: wrote {len(batch)} trajectories ({rows:,} token rows)")
            batch, alignment, rows = {}, {}, 0
    if batch:
        write_batch_files(txn, batch, alignment)
    txn.remove(files)
    after = txn.commit()
    report.files_after, report.bytes_after = len(after.files), sum(f.bytes for f in after.files)
    for f in after.files:
        report.tables_after[f.table] = report.tables_after.get(f.table, 0) + f.bytes
    return report
