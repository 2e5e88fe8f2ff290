"""Staged, all-or-nothing appends to a corpus directory.

New rows are flushed in batches to Parquet parts under `<corpus>/.import-<id>/`; nothing in the
corpus changes until `commit()`: then parts that hold replaced trajectories are rewritten without
them, staged parts are renamed into `trajectories/` and `steps/`, stale replays of replaced
trajectories are removed, and the manifest is written last. A new corpus is staged whole and
renamed into place.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from horizonlens.corpus.io import (
    MANIFEST,
    CorpusError,
    conform,
    new_manifest,
    open_corpus_files,
    read_manifest,
    write_json_atomic,
    write_table_atomic,
)
from horizonlens.corpus.layout import file_stem, replay_checkpoints, replay_dir
from horizonlens.corpus.schema import STEPS, TRAJECTORIES
from horizonlens.corpus.text import step_tokens_estimate


def finalize(traj: dict[str, Any], steps: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fill derived columns (ids, counts, token estimates, first failure) of a converted trajectory."""
    tid = traj["trajectory_id"]
    for i, s in enumerate(steps):
        s["trajectory_id"] = tid
        s["step"] = i
        if s.get("n_tokens") is None:
            s["n_tokens"] = step_tokens_estimate(s)
    failed = [s["step"] for s in steps if s.get("check_passed") is False]
    traj.update(n_steps=len(steps), n_tokens=sum(int(s["n_tokens"] or 0) for s in steps), n_failed_checks=len(failed),
                first_failed_step=failed[0] if failed else None)
    if traj.get("duration_s") is None:
        durations = [s["duration_s"] for s in steps if isinstance(s.get("duration_s"), (int, float))]
        traj["duration_s"] = float(sum(durations)) if durations else None
    return traj, steps


class StagedImport:
    """Collects converted trajectories and applies them to a corpus in one step at commit."""

    def __init__(self, root: Path, replace: bool = False, batch_size: int = 500):
        self.root = root
        self.replace = replace
        self.batch_size = batch_size
        self.corpus_exists = (root / MANIFEST).exists()
        if self.corpus_exists:
            files = open_corpus_files(root)  # validate before staging anything
            self.existing = set(pq.read_table(files.files["trajectories"][0].parent, columns=["trajectory_id"])
                                .column(0).to_pylist())
        elif root.exists() and any(root.iterdir()):
            raise CorpusError(f"{root}: exists, is not empty and has no {MANIFEST}; refusing to import into it")
        else:
            self.existing = set()
        self.run = uuid.uuid4().hex[:12]
        parent = root if self.corpus_exists else root.parent
        parent.mkdir(parents=True, exist_ok=True)
        self.stage = parent / f".import-{self.run}" if self.corpus_exists else parent / f".tmp-{root.name}-{self.run}"
        self.stage.mkdir(parents=True)
        self.seen: set[str] = set()
        self.to_replace: set[str] = set()
        self.sources: set[str] = set()
        self.trajs: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.parts = 0
        self.done = False

    def __enter__(self) -> "StagedImport":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.done:
            self.abort()

    def validate(self, traj: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        """Raise ValueError if the converted rows do not fit the corpus schema."""
        finalize(traj, steps)
        row = {k: v for k, v in traj.items() if not k.startswith("_")}
        try:
            conform(pa.Table.from_pylist([row], schema=TRAJECTORIES), "trajectories")
            if steps:
                pa.Table.from_pylist(steps, schema=STEPS)
        except (pa.ArrowInvalid, pa.ArrowTypeError, CorpusError, OverflowError) as exc:
            raise ValueError(f"does not fit the corpus schema: {exc}") from exc

    def add(self, traj: dict[str, Any], steps: list[dict[str, Any]]) -> str:
        """Stage one trajectory: 'added', 'replaced', 'exists' (skipped) or 'duplicate' (skipped)."""
        tid = traj["trajectory_id"]
        if tid in self.seen:
            return "duplicate"
        self.seen.add(tid)
        status = "added"
        if tid in self.existing:
            if not self.replace:
                return "exists"
            self.to_replace.add(tid)
            status = "replaced"
        self.sources.add(traj["source"])
        self.trajs.append({k: v for k, v in traj.items() if not k.startswith("_")})
        self.steps.extend(steps)
        if len(self.trajs) >= self.batch_size:
            self.flush()
        return status

    def flush(self) -> None:
        if not self.trajs:
            return
        name = f"import-{self.run}-{self.parts:05d}.parquet"
        trajs = conform(pa.Table.from_pylist(self.trajs, schema=TRAJECTORIES), "trajectories")
        steps = conform(pa.Table.from_pylist(self.steps, schema=STEPS), "steps").sort_by(
            [("trajectory_id", "ascending"), ("step", "ascending")])
        write_table_atomic(trajs, self.stage / "trajectories" / name)
        write_table_atomic(steps, self.stage / "steps" / name)
        self.parts += 1
        self.trajs, self.steps = [], []

    def abort(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)
        self.done = True

    def commit(self) -> None:
        self.flush()
        if self.corpus_exists:
            self._commit_into_existing()
        else:
            self._commit_new()
        self.done = True

    def _commit_new(self) -> None:
        if self.parts == 0:  # nothing imported: still create an empty, valid corpus
            write_table_atomic(TRAJECTORIES.empty_table(), self.stage / "trajectories" / "part-00000.parquet")
            write_table_atomic(STEPS.empty_table(), self.stage / "steps" / "part-00000.parquet")
        write_json_atomic(new_manifest(sorted(self.sources)), self.stage / MANIFEST)
        os.replace(self.stage, self.root)

    def _commit_into_existing(self) -> None:
        rewrites = self._stage_rewrites() if self.to_replace else []
        for table in ("trajectories", "steps"):
            staged = self.stage / table
            for part in sorted(staged.glob("*.parquet")) if staged.is_dir() else []:
                os.replace(part, self.root / table / part.name)
        for staged_part, target in rewrites:
            if staged_part is None:
                target.unlink()
            else:
                os.replace(staged_part, target)
        self._drop_stale_replays()
        manifest = read_manifest(self.root)
        manifest["sources"] = sorted(set(manifest.get("sources") or []) | self.sources)
        manifest["updated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_json_atomic(manifest, self.root / MANIFEST)
        shutil.rmtree(self.stage, ignore_errors=True)

    def _stage_rewrites(self) -> list[tuple[Path | None, Path]]:
        """Existing parts that hold replaced ids, rewritten without them into the stage."""
        out: list[tuple[Path | None, Path]] = []
        ids = pa.array(sorted(self.to_replace))
        for table in ("trajectories", "steps"):
            for part in sorted((self.root / table).rglob("*.parquet")):
                if f"import-{self.run}-" in part.name:
                    continue
                data = pq.read_table(part)
                keep = data.filter(pc.invert(pc.is_in(data["trajectory_id"], value_set=ids)))
                if keep.num_rows == data.num_rows:
                    continue
                if keep.num_rows == 0:
                    out.append((None, part))
                    continue
                staged = self.stage / "rewrite" / table / part.name
                write_table_atomic(keep, staged)
                out.append((staged, part))
        return out

    def _drop_stale_replays(self) -> None:
        if not self.to_replace:
            return
        for ckpt_id in replay_checkpoints(self.root):
            ckpt = replay_dir(self.root, ckpt_id)
            for tid in self.to_replace:
                for sub in ("steps", "routing"):
                    (ckpt / sub / f"{file_stem(tid)}.parquet").unlink(missing_ok=True)

