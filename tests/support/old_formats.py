"""Data as older versions of Horizon Lens wrote it, for the tests of `horizonlens migrate`.

Written by hand here (pyarrow and JSON), never through the current writers, which refuse these formats.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def file_stem(trajectory_id: str) -> str:
    """How caches before manifests named a trajectory's file."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", trajectory_id)[:80]
    return f"{safe}-{hashlib.sha1(trajectory_id.encode()).hexdigest()[:8]}"


def write_format1_cache(corpus: Path, checkpoint_id: str, replays: dict[str, dict[str, pa.Table]],
                        notes: dict[str, dict[str, str]] | None = None, manifest: bool = True) -> Path:
    """A replay cache in routing format 1: per trajectory a `steps` file and a `routing` file of per-token rows.

    `manifest`: with the manifest of the first versions that had one (each file's trajectories and notes listed,
    no `routing_format`); without, as the very first versions wrote it (files named after their trajectory,
    notes in the steps file's schema metadata). Returns the cache folder.
    """
    root = corpus / "replays" / checkpoint_id
    files = []
    for n, (tid, tables) in enumerate(replays.items()):
        for table, data in tables.items():
            name = f"hl-{uuid.uuid4().hex[:12]}-{n:05d}.parquet" if manifest else f"{file_stem(tid)}.parquet"
            path = root / table / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if not manifest and table == "steps" and notes and tid in notes:
                data = data.replace_schema_metadata({k.encode(): v.encode() for k, v in notes[tid].items()})
            pq.write_table(data, path)
            raw = path.read_bytes()
            files.append({"table": table, "path": f"{table}/{name}", "rows": data.num_rows, "bytes": len(raw),
                          "sha256": hashlib.sha256(raw).hexdigest(),
                          "meta": {"trajectories": [tid], "notes": {tid: (notes or {}).get(tid, {})}}})
    if manifest:
        (root / "manifest.json").write_text(json.dumps({"kind": "replay cache", "checkpoint_id": checkpoint_id,
                                                        "dataset_id": uuid.uuid4().hex, "version": len(replays),
                                                        "files": files}))
    return root
