"""`horizonlens compact`: rewrite a replay cache as a few large files in the current routing format.

A cache grows one commit per replay batch (the app replays one trajectory at a time), and caches written
before the two routing tiers hold one format-1 file per trajectory and table. Compaction rewrites each
checkpoint's cache as multi-trajectory files, at most COMPACT_ROWS token-tier rows each, trajectories in
id order (so DuckDB skips row groups by trajectory_id statistics):

- format-1 routing (per-token rows with float16 weights) is converted: the step tier is computed from
  its weights, the token tier encoded from them (the router margin was not recorded then: null);
- current-format rows are copied as they are (never re-quantized).

Everything happens in one dataset transaction per checkpoint, so readers see the cache before or after,
never half; a failure leaves it as it was. Notes per trajectory are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from horizonlens.errors import CorpusError
from horizonlens.replays.cache import NOTE_KEYS, write_batch_files
from horizonlens.replays.codec import aggregate_tables, token_table
from horizonlens.replays.layout import (
    CACHE_TABLES,
    LEGACY_ROUTING,
    TOKEN_TIER,
    read_checkpoint_meta,
    replay_checkpoints,
    replay_dataset,
)
from horizonlens.storage.dataset import DataFile, Snapshot

COMPACT_ROWS = 4_000_000  # token-tier rows per file (~35 MB at 40 layers x 256 experts)


@dataclass
class CompactReport:
    """What compaction did to one checkpoint's cache."""

    checkpoint_id: str
    trajectories: int = 0
    converted: int = 0  # trajectories whose format-1 routing was converted to the two tiers
    files_before: int = 0
    bytes_before: int = 0
    files_after: int = 0
    bytes_after: int = 0
    tables_after: dict[str, int] = field(default_factory=dict)  # bytes per table after

    def to_json(self) -> dict[str, Any]:
        """The report as printed by `horizonlens compact --json`."""
        return {k: getattr(self, k) for k in ("checkpoint_id", "trajectories", "converted", "files_before",
                                              "bytes_before", "files_after", "bytes_after", "tables_after")}


def compact(corpus: Path | str, checkpoint_id: str | None = None, max_rows: int = COMPACT_ROWS,
            log: Callable[[str], None] = lambda _: None) -> list[CompactReport]:
    """Compact every checkpoint's replay cache in `corpus` (or only `checkpoint_id`); one report each."""
    ids = replay_checkpoints(corpus)
    if checkpoint_id is not None:
        if checkpoint_id not in ids:
            raise CorpusError(f"{corpus}: no replay cache for checkpoint {checkpoint_id!r} (have: "
                              f"{', '.join(ids) or 'none'})")
        ids = [checkpoint_id]
    return [_compact_one(Path(corpus), ckpt, max_rows, log) for ckpt in ids]


def _compact_one(corpus: Path, checkpoint_id: str, max_rows: int, log: Callable[[str], None]) -> CompactReport:
    dataset = replay_dataset(corpus, checkpoint_id)
    report = CompactReport(checkpoint_id)
    num_experts = int(read_checkpoint_meta(corpus, checkpoint_id).get("num_experts") or 0)
    with dataset.transaction(create={"kind": "replay cache", "checkpoint_id": checkpoint_id}) as txn:
        snap = txn.snapshot
        files = [f for f in snap.files if f.table in CACHE_TABLES]
        report.files_before, report.bytes_before = len(files), sum(_size(snap, f) for f in files)
        holders = _trajectory_files(snap, files)
        report.trajectories = len(holders)
        batch: dict[str, tuple[dict[str, pa.Table], dict[str, str]]] = {}
        rows = 0
        for tid in sorted(holders):
            tables, notes, converted = _trajectory_tables(snap, tid, holders[tid], num_experts)
            report.converted += converted
            batch[tid] = (tables, notes)
            rows += tables[TOKEN_TIER].num_rows if TOKEN_TIER in tables else 0
            if rows >= max_rows:
                write_batch_files(txn, batch)
                log(f"{checkpoint_id}: wrote {len(batch)} trajectories ({rows:,} token rows)")
                batch, rows = {}, 0
        if batch:
            write_batch_files(txn, batch)
        txn.remove(files)
        after = txn.commit()
    kept = [f for f in after.files if f.table in CACHE_TABLES]
    report.files_after, report.bytes_after = len(kept), sum(f.bytes for f in kept)
    for f in kept:
        report.tables_after[f.table] = report.tables_after.get(f.table, 0) + f.bytes
    return report


def _size(snap: Snapshot, f: DataFile) -> int:
    if f.bytes >= 0:
        return f.bytes
    path = snap.root / f.path
    return path.stat().st_size if path.exists() else 0


def _trajectory_files(snap: Snapshot, files: list[DataFile]) -> dict[str, dict[str, list[DataFile]]]:
    """Per trajectory, per table, the files holding its rows (format-1 files are read for their id)."""
    out: dict[str, dict[str, list[DataFile]]] = {}
    for f in files:
        ids = f.meta.get("trajectories")
        if not isinstance(ids, list):  # one file per trajectory, written before manifests
            try:
                ids = pq.read_table(snap.root / f.path, columns=["trajectory_id"]).column(0).unique().to_pylist()
            except (OSError, pa.ArrowException) as exc:
                raise CorpusError(f"{snap.root / f.path}: cannot be read ({exc}); replay its trajectory again "
                                  "or remove the file before compacting") from exc
        for tid in ids:
            out.setdefault(tid, {}).setdefault(f.table, []).append(f)
    return out


def _read(snap: Snapshot, entries: list[DataFile], trajectory_id: str) -> pa.Table:
    parts = []
    for e in entries:
        try:
            parts.append(pq.read_table(snap.root / e.path, filters=[("trajectory_id", "=", trajectory_id)])
                         .replace_schema_metadata(None))
        except (OSError, pa.ArrowException) as exc:
            raise CorpusError(f"{snap.root / e.path}: cannot be read ({str(exc)[:200]}); nothing was changed. "
                              f"Replay {trajectory_id!r} again (horizonlens replay --force -t ID) and compact "
                              "after that") from exc
    return pa.concat_tables(parts, promote_options="permissive")


def _notes(snap: Snapshot, entries: list[DataFile], trajectory_id: str) -> dict[str, str]:
    for e in entries:
        notes = (e.meta.get("notes") or {}).get(trajectory_id)
        if isinstance(notes, dict):
            return {k: str(v) for k, v in notes.items() if k in NOTE_KEYS}
        try:  # format 1 kept its notes in the steps file's schema metadata
            raw = pq.read_schema(snap.root / e.path).metadata or {}
        except (OSError, pa.ArrowException):
            continue
        return {k.decode(): v.decode() for k, v in raw.items() if k.decode() in NOTE_KEYS}
    return {}


def _trajectory_tables(snap: Snapshot, trajectory_id: str, holders: dict[str, list[DataFile]],
                       num_experts: int) -> tuple[dict[str, pa.Table], dict[str, str], int]:
    """One trajectory's tables in the current format, its notes, and 1 if format-1 routing was converted."""
    notes = _notes(snap, holders.get("steps", []), trajectory_id)  # none for e.g. rollout-only rows
    tables = {table: _read(snap, entries, trajectory_id) for table, entries in holders.items()
              if table != LEGACY_ROUTING}
    legacy = holders.get(LEGACY_ROUTING)
    if not legacy or "routing_steps" in tables:
        if "steps" in tables:
            notes.setdefault("routing", "tokens" if TOKEN_TIER in tables else
                             "steps" if "routing_steps" in tables else "none")
        return tables, notes, 0
    converted = convert_format1(trajectory_id, _read(snap, legacy, trajectory_id), num_experts)
    tables.update(converted)
    notes["routing"] = "tokens" if converted else "none"  # a dense model's replay had no routing rows
    return tables, notes, 1


def convert_format1(trajectory_id: str, rows: pa.Table, num_experts: int = 0) -> dict[str, pa.Table]:
    """Format-1 routing rows of one trajectory -> its step tier and token tier (margin unknown: null)."""
    if rows.num_rows == 0:
        return {}
    rows = rows.sort_by([("token_index", "ascending"), ("layer", "ascending")])
    layers = np.unique(rows["layer"].to_numpy())
    n_layers = len(layers)
    if rows.num_rows % n_layers:
        raise CorpusError(f"format-1 routing of {trajectory_id!r}: not every token has every layer; replay it again")
    n = rows.num_rows // n_layers
    k = int(pc.max(pc.list_value_length(rows["experts"])).as_py())
    experts = np.asarray(rows["experts"].combine_chunks().flatten().to_numpy(zero_copy_only=False),
                         np.int64).reshape(n, n_layers, k)
    weights = np.asarray(rows["weights"].combine_chunks().flatten().to_numpy(zero_copy_only=False),
                         np.float64).reshape(n, n_layers, k)
    entropy = rows["entropy"].to_numpy(zero_copy_only=False).astype(np.float64).reshape(n, n_layers)
    first = np.arange(n) * n_layers  # the first row of each token
    per_token = {"steps": rows["step"].to_numpy()[first], "segments": np.asarray(rows["segment"].to_pylist(),
                                                                                  dtype=object)[first]}
    e = max(num_experts, int(experts.max()) + 1)
    out = aggregate_tables(trajectory_id, layers.tolist(), experts, weights, e, **per_token)
    out[TOKEN_TIER] = token_table(trajectory_id, layers.tolist(), experts, weights, entropy, None, e,
                                  token_ids=rows["token_id"].to_numpy()[first], **per_token)
    return out
