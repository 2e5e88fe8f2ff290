"""The replay cache inside a corpus: replays/<checkpoint_id>/{steps,routing}/<trajectory>.parquet.

The checkpoint id hashes config, tokenizer and weights, so a changed checkpoint never reads stale
results. Each trajectory's files are written atomically, routing first and steps last: a steps
file is the marker that a replay is complete. A file that fails to read (or has the wrong
schema) is treated as missing and recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from horizonlens.corpus.io import validate_file, write_json_atomic, write_table_atomic
from horizonlens.corpus.layout import CHECKPOINT_META, file_stem, replay_checkpoints, replay_dir
from horizonlens.corpus.schema import REPLAY_STEPS, ROUTING
from horizonlens.errors import CorpusError

if TYPE_CHECKING:
    from horizonlens.model.replay import ReplayResult

@dataclass
class ReplayCache:
    """The cache of one checkpoint's replays inside one corpus."""

    corpus: Path
    checkpoint_id: str

    @property
    def root(self) -> Path:
        return replay_dir(self.corpus, self.checkpoint_id)

    def paths(self, trajectory_id: str) -> tuple[Path, Path]:
        stem = file_stem(trajectory_id)
        return self.root / "steps" / f"{stem}.parquet", self.root / "routing" / f"{stem}.parquet"

    def has(self, trajectory_id: str) -> bool:
        """True when a complete, readable replay is cached (a corrupt one is removed)."""
        steps, routing = self.paths(trajectory_id)
        if not steps.exists() or not routing.exists():
            return False
        try:
            validate_file(steps, REPLAY_STEPS)
            validate_file(routing, ROUTING)
        except CorpusError:
            steps.unlink(missing_ok=True)
            routing.unlink(missing_ok=True)
            return False
        return True

    def write(self, result: "ReplayResult", meta: dict[str, Any] | None = None) -> None:
        steps, routing = self.paths(result.trajectory_id)
        meta_path = self.root / CHECKPOINT_META
        if meta is not None and not meta_path.exists():
            write_json_atomic(meta, meta_path)
        write_table_atomic(result.routing_table(), routing)
        notes = {"notes": "\n".join(result.notes), "n_replayed": str(result.n_replayed),
                 "n_rendered": str(len(result.rendered)), "template": result.rendered.template}
        table = result.step_table()
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **{k: v.encode() for k, v in notes.items()}})
        write_table_atomic(table, steps)

    def read_steps(self, trajectory_id: str) -> pa.Table | None:
        if not self.has(trajectory_id):
            return None
        return pq.read_table(self.paths(trajectory_id)[0])

    def read_notes(self, trajectory_id: str) -> dict[str, str]:
        if not self.has(trajectory_id):
            return {}
        meta = pq.read_schema(self.paths(trajectory_id)[0]).metadata or {}
        return {k.decode(): v.decode() for k, v in meta.items() if k in (b"notes", b"n_replayed", b"n_rendered", b"template")}

    def read_routing(self, trajectory_id: str) -> pa.Table | None:
        if not self.has(trajectory_id):
            return None
        return pq.read_table(self.paths(trajectory_id)[1])

    def cached_ids(self) -> set[str]:
        directory = self.root / "steps"
        if not directory.is_dir():
            return set()
        ids = set()
        for path in directory.glob("*.parquet"):
            try:
                ids.add(pq.read_table(path, columns=["trajectory_id"]).column(0)[0].as_py())
            except (pa.ArrowInvalid, OSError, IndexError):
                continue
        return ids


def list_checkpoints(corpus: Path | str) -> list[str]:
    """Checkpoint ids with a replay cache in this corpus."""
    return [c for c in replay_checkpoints(corpus) if (replay_dir(corpus, c) / "steps").is_dir()]
