"""`horizonlens migrate`: upgrade data an older Horizon Lens wrote to the one format this version reads.

The only place old formats are read. What it upgrades, each in one atomic commit:

- a corpus (or annotations) manifest without a file list: the files of its table folders are recorded;
- a replay cache in routing format 1 (a `routing` table of per-token rows with int16 experts in the router's
  order and float16 weights), with or without a manifest: each trajectory's step tier is computed from its
  weights and its token tier encoded from them (the router margin was not recorded then: null); its other
  tables are copied. Notes kept in a file's schema metadata move into the manifest.

Opening data in an old format names this command; running it on current data changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from horizonlens.corpus.files import corpus_dataset
from horizonlens.errors import CorpusError
from horizonlens.labels.annotations import annotations_dataset
from horizonlens.replays.cache import NOTE_KEYS
from horizonlens.replays.codec import aggregate_tables, token_table
from horizonlens.replays.compact import CompactReport, rewrite
from horizonlens.replays.layout import (
    CACHE_TABLES,
    FORMAT1_TABLE,
    TOKEN_TIER,
    new_cache,
    read_checkpoint_meta,
    replay_checkpoints,
    replay_dataset,
)
from horizonlens.storage.dataset import Dataset
from horizonlens.storage.location import CorpusPath, as_location, read_schema, read_table
from horizonlens.storage.manifest import DataFile, check_path

OLD_TABLES = (*CACHE_TABLES, FORMAT1_TABLE)


@dataclass
class MigrateReport:
    """What `migrate` upgraded: the corpus's file list, the annotations', and each old replay cache."""

    corpus_listed: bool = False
    annotations_listed: bool = False
    caches: list[CompactReport] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report as printed by `horizonlens migrate --json`."""
        return {"corpus_listed": self.corpus_listed, "annotations_listed": self.annotations_listed,
                "caches": [c.to_json() for c in self.caches]}


def migrate(corpus: CorpusPath | str, log: Callable[[str], None] = lambda _: None) -> MigrateReport:
    """Upgrade everything old in `corpus` (see the module docstring); current data is left as it is."""
    root = as_location(corpus)
    report = MigrateReport(corpus_listed=corpus_dataset(root).record_listing())
    labels = annotations_dataset(root)
    report.annotations_listed = labels.exists() and labels.record_listing()
    for ckpt in replay_checkpoints(root):
        dataset = replay_dataset(root, ckpt)
        try:
            dataset.snapshot(missing_ok=True)
            continue  # current
        except CorpusError:
            pass
        log(f"{ckpt}: upgrading its replay cache")
        num_experts = int(read_checkpoint_meta(root, ckpt).get("num_experts") or 0)
        with dataset.upgrade(create=new_cache(ckpt)) as (txn, raw):
            old = _old_files(dataset, raw)

            def read(tid: str, files: dict[str, list[DataFile]], dataset: Dataset = dataset, experts: int = num_experts
                     ) -> tuple[dict[str, pa.Table], dict[str, str], bool]:
                return _convert(dataset, tid, files, experts)

            report.caches.append(rewrite(txn, ckpt, old, read, log=log))
    return report


def _old_files(dataset: Dataset, raw: dict[str, Any] | None) -> list[DataFile]:
    """The files of an old cache, each with the trajectories it holds (read from the file when not recorded)."""
    where = str(dataset.manifest_path)
    entries: list[tuple[str, str, dict[str, Any]]] = []
    if raw is not None and isinstance(raw.get("files"), list):
        for value in raw["files"]:
            if not isinstance(value, dict) or value.get("table") not in OLD_TABLES:
                raise CorpusError(f"{where}: an entry is not a replay-cache file; remove it by hand and run again")
            meta: dict[str, Any] = value["meta"] if isinstance(value.get("meta"), dict) else {}
            entries.append((str(value["table"]), check_path(value.get("path"), where), meta))
    else:  # from before manifests: one file per trajectory and table
        entries = [(table, rel, {}) for table in OLD_TABLES for rel in dataset.table_files(table)]
    out: list[DataFile] = []
    seen: set[str] = set()
    for table, rel, meta in entries:
        if rel in seen:  # listed twice: its rows are read once
            continue
        seen.add(rel)
        ids = meta.get("trajectories")
        if not isinstance(ids, list) or not all(isinstance(t, str) for t in ids):
            ids = _read(dataset.root / rel, ["trajectory_id"]).column(0).unique().to_pylist()
        size = (dataset.root / rel).stat().st_size
        out.append(DataFile(table, rel, 0, size, None, {**meta, "trajectories": ids}))
    return out


def _read(path: CorpusPath, columns: list[str] | None = None, trajectory_id: str | None = None) -> pa.Table:
    try:
        filters = [("trajectory_id", "=", trajectory_id)] if trajectory_id is not None else None
        return read_table(path, columns=columns, filters=filters).replace_schema_metadata(None)
    except (OSError, pa.ArrowException) as exc:
        raise CorpusError(f"{path}: cannot be read ({str(exc)[:200]}); nothing was changed. Remove the file (its "
                          "trajectory is replayed again on demand) and run `horizonlens migrate` again") from exc


def _notes(dataset: Dataset, trajectory_id: str, files: list[DataFile]) -> dict[str, str]:
    """A replay's notes: from the manifest, or (before manifests) from its steps file's schema metadata."""
    for e in files:
        notes = (e.meta.get("notes") or {}).get(trajectory_id)
        if isinstance(notes, dict):
            return {k: str(v) for k, v in notes.items() if k in NOTE_KEYS}
        try:
            raw = read_schema(dataset.root / e.path).metadata or {}
        except (OSError, pa.ArrowException):
            continue
        return {k.decode(): v.decode() for k, v in raw.items() if k.decode() in NOTE_KEYS}
    return {}


def _convert(dataset: Dataset, trajectory_id: str, files: dict[str, list[DataFile]], num_experts: int
             ) -> tuple[dict[str, pa.Table], dict[str, str], bool]:
    """One trajectory of an old cache in the current format, its notes, and whether its routing was converted."""
    notes = _notes(dataset, trajectory_id, files.get("steps", []))
    tables = {table: pa.concat_tables([_read(dataset.root / e.path, trajectory_id=trajectory_id) for e in entries],
                                      promote_options="permissive")
              for table, entries in files.items() if table != FORMAT1_TABLE}
    old = files.get(FORMAT1_TABLE)
    if not old or "routing_steps" in tables:
        if "steps" in tables:
            notes.setdefault("routing", "tokens" if TOKEN_TIER in tables else
                             "steps" if "routing_steps" in tables else "none")
        return tables, notes, False
    rows = pa.concat_tables([_read(dataset.root / e.path, trajectory_id=trajectory_id) for e in old])
    converted = convert_format1(trajectory_id, rows, num_experts)
    tables.update(converted)
    notes["routing"] = "tokens" if converted else "none"  # a dense model's replay had no routing rows
    return tables, notes, True


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
