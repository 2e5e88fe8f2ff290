"""Analysis results kept inside the corpus: computed once per corpus state, read back by every later caller.

Failure modes and routing probes are global computations (a clustering, a cross-validation), not the unit by
unit summaries of `derived/spec.py`, so they are not updated incrementally: each is a small dataset of its own
under `results/<name>-<key>/` (`key` hashes what was asked: the selection and the method's settings), whose
manifest records, as a derived dataset's does, `built_from` (the state of the data it was computed from) and
`definition` (the key). A result whose `built_from` differs from the data's state now is stale and computed
again; nothing else is ever read from it.

A corpus that cannot be written (read-only files, a bucket without write access) still gets its result, just
not kept.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from horizonlens.errors import CorpusError
from horizonlens.storage.dataset import Dataset
from horizonlens.storage.location import CorpusPath, as_location, read_table

RESULTS_DIR = "results"


def result_key(*parts: Any) -> str:
    """A short, stable hash of what a result depends on besides the data (selection, settings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def result_dataset(root: CorpusPath | str, name: str, key: str, tables: tuple[str, ...]) -> Dataset:
    """The dataset that keeps one result."""
    return Dataset(as_location(root) / RESULTS_DIR / f"{name}-{key}", tables)


def read_result(root: CorpusPath | str, name: str, key: str, tables: tuple[str, ...],
                state: str) -> tuple[dict[str, pa.Table], dict[str, Any]] | None:
    """A kept result computed from the data in `state`, with its manifest's `meta`; None if none is."""
    dataset = result_dataset(root, name, key, tables)
    try:
        if not dataset.exists():
            return None
        snap = dataset.snapshot()
        if snap.manifest.get("built_from") != state or snap.manifest.get("definition") != key:
            return None
        out = {t: pa.concat_tables([read_table(p).replace_schema_metadata(None) for p in snap.paths(t)])
               for t in tables if snap.paths(t)}
    except (OSError, CorpusError, pa.ArrowException):
        return None
    if set(out) != set(tables):
        return None
    return out, dict(snap.manifest.get("meta") or {})


def keep_result(root: CorpusPath | str, name: str, key: str, state: str, tables: dict[str, pa.Table],
                meta: dict[str, Any]) -> bool:
    """Publish a result (replacing an older one of the same key) in one commit; False if the corpus is read-only."""
    dataset = result_dataset(root, name, key, tuple(tables))
    try:
        with dataset.transaction(create={"kind": f"{name} result"}) as txn:
            txn.remove(txn.snapshot.files)
            for table, data in tables.items():
                txn.write(table, data)
            txn.update(built_from=state, definition=key, meta=meta)
            txn.commit()
    except (OSError, CorpusError):
        return False
    return True


def computed_once(root: CorpusPath | str, name: str, key: str, state: str, tables: tuple[str, ...],
                  compute: Callable[[], tuple[dict[str, pa.Table], dict[str, Any]]],
                  keep: bool = True) -> tuple[dict[str, pa.Table], dict[str, Any]]:
    """The result for this data state and key: read back when kept, else computed (and kept when `keep`).

    `compute` returns the tables (exactly `tables`) and a JSON-safe `meta` dict (how it was computed).
    """
    found = read_result(root, name, key, tables, state)
    if found is not None:
        return found
    out, meta = compute()
    if keep:
        keep_result(root, name, key, state, out, meta)
    return out, meta
