"""All-or-nothing imports into a corpus: one dataset transaction from the first record to the commit.

The corpus lock is held for the whole import, so two imports into one corpus run one after the other
and the second sees the first's trajectories (no duplicate ids, no doubled steps). Converted rows are
flushed in batches to new Parquet files that stay invisible until `commit()` publishes them together
with the manifest switch (corpus/dataset.py): a crash at any moment leaves the corpus as it was, and the
next writer removes the half-written files. Replaced trajectories: files that hold them are rewritten
without them in the same commit, and their cached replays are dropped first (a crash in between only
costs a replay, never data).

A trajectory whose id is already in the corpus is compared with the stored one (`fingerprint`): the same
content is "already present"; different content under the same id is a *conflict*, reported by the import
with its id (the corpus keeps its own rows unless the import replaces them).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from horizonlens.corpus.files import MANIFEST, conform, corpus_dataset, is_empty_dir, new_manifest, read_manifest
from horizonlens.corpus.schema import STEPS, TRAJECTORIES
from horizonlens.corpus.text import step_tokens_estimate
from horizonlens.errors import CorpusError, RecordError
from horizonlens.replays.layout import new_cache, replay_checkpoints, replay_dataset
from horizonlens.storage.dataset import Transaction
from horizonlens.storage.location import CorpusPath, as_location, read_table
from horizonlens.storage.scan import hive_keys

TABLES_OF = {"trajectories": TRAJECTORIES, "steps": STEPS}


def fingerprint(traj: pa.Table, steps: pa.Table) -> str:
    """A digest of one trajectory's rows as the corpus stores them (its steps in step order).

    Both sides of a comparison go through the corpus schema first, so a row fresh from a converter and the
    same row read back from Parquet (timestamps at the stored precision, the same column order) digest alike.
    """
    traj = conform(traj, "trajectories")
    steps = conform(steps, "steps").sort_by("step")
    text = json.dumps([traj.to_pylist(), steps.to_pylist()], sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class Collision:
    """A staged record whose trajectory id the corpus already holds, and where the record came from."""

    trajectory_id: str
    digest: str
    file: str
    where: str


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
    """Collects converted trajectories and publishes them into a corpus in one commit.

    Use as a context manager: entering takes the corpus lock (creating the corpus if `root` is missing or
    empty), leaving without `commit()` discards everything staged.
    """

    def __init__(self, root: CorpusPath | str, replace: bool = False, batch_size: int = 500,
                 lock_timeout_s: float | None = None):
        self.root = as_location(root)
        self.replace = replace
        self.batch_size = batch_size
        self.lock_timeout_s = lock_timeout_s
        self.corpus_exists = (self.root / MANIFEST).exists()
        if self.corpus_exists:
            read_manifest(self.root)  # a clear error for a corpus of another schema version, before any work
        elif self.root.exists() and not is_empty_dir(self.root):
            raise CorpusError(f"{self.root}: exists, is not empty and has no {MANIFEST}; refusing to import into it")
        self.seen: set[str] = set()
        self.to_replace: set[str] = set()
        self.sources: set[str] = set()
        self.trajs: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.written = 0
        self.existing: set[str] = set()
        self.collisions: list[Collision] = []  # ids already in the corpus, not replaced: same content or conflict
        self._cm: Any = None
        self.txn: Transaction | None = None
        self.partitions: dict[str, list[str]] = {}  # hive partition keys of each table's files
        self.done = False

    def __enter__(self) -> StagedImport:
        self._cm = corpus_dataset(self.root).transaction(create=new_manifest([]), timeout_s=self.lock_timeout_s)
        self.txn = self._cm.__enter__()
        self.corpus_exists = not self.txn.created
        self.partitions = {t: hive_keys([e.path for e in self.txn.snapshot.table(t)]) for t in TABLES_OF}
        # the ids already there, read under the lock: what this import adds to or replaces
        self.existing = set()
        for entry in self.txn.snapshot.table("trajectories"):
            path = self.root / entry.path
            try:
                self.existing.update(read_table(path, columns=["trajectory_id"]).column(0).to_pylist())
            except (OSError, pa.ArrowException, CorpusError) as exc:
                self._cm.__exit__(None, None, None)
                raise CorpusError(f"{path}: not a readable Parquet file ({exc}); the corpus is damaged") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self._cm is not None:
            self._cm.__exit__(*exc)
        self.done = True

    def validate(self, traj: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        """Raise RecordError if the converted rows do not fit the corpus schema."""
        finalize(traj, steps)
        row = {k: v for k, v in traj.items() if not k.startswith("_")}
        try:
            conform(pa.Table.from_pylist([row], schema=TRAJECTORIES), "trajectories")
            if steps:
                pa.Table.from_pylist(steps, schema=STEPS)
        except (pa.ArrowInvalid, pa.ArrowTypeError, CorpusError, OverflowError) as exc:
            raise RecordError(f"does not fit the corpus schema: {exc}") from exc

    def add(self, traj: dict[str, Any], steps: list[dict[str, Any]], where: tuple[str, str] = ("?", "?")) -> str:
        """Stage one trajectory: 'added', 'replaced', 'exists' (skipped, compared later) or 'duplicate' (skipped).

        An 'exists' is settled by `collisions_settled()`: the same content as the corpus's, or a conflict.
        `where` (file, record) is kept for the conflict report.
        """
        tid = traj["trajectory_id"]
        if tid in self.seen:
            return "duplicate"
        self.seen.add(tid)
        status = "added"
        if tid in self.existing:
            if not self.replace:
                row = {k: v for k, v in traj.items() if not k.startswith("_")}
                digest = fingerprint(pa.Table.from_pylist([row], schema=TRAJECTORIES),
                                     pa.Table.from_pylist(steps, schema=STEPS))
                self.collisions.append(Collision(tid, digest, *where))
                return "exists"
            self.to_replace.add(tid)
            status = "replaced"
        self.sources.add(traj["source"])
        self.trajs.append({k: v for k, v in traj.items() if not k.startswith("_")})
        self.steps.extend(steps)
        if len(self.trajs) >= self.batch_size:
            self.flush()
        return status

    def collisions_settled(self) -> tuple[list[Collision], list[Collision]]:
        """The staged records whose ids the corpus holds, split: (same content, different content = conflicts).

        Reads only the stored rows of those ids (row groups whose statistics cannot hold them are skipped).
        """
        if not self.collisions:
            return [], []
        assert self.txn is not None, "use StagedImport as a context manager"
        ids = pa.array(sorted({c.trajectory_id for c in self.collisions}))
        wanted = pc.field("trajectory_id").isin(ids)
        parts: dict[str, list[pa.Table]] = {"trajectories": [], "steps": []}
        for name, tables in parts.items():
            for entry in self.txn.snapshot.table(name):
                data = read_table(self.root / entry.path, filters=wanted)
                tables.append(data.select([c for c in TABLES_OF[name].names if c in data.column_names]))
        trajs = pa.concat_tables(parts["trajectories"], promote_options="permissive")
        steps = pa.concat_tables(parts["steps"], promote_options="permissive") if parts["steps"] else None
        rows_of: dict[str, list[int]] = {}
        for i, tid in enumerate(steps["trajectory_id"].to_pylist() if steps is not None else []):
            rows_of.setdefault(tid, []).append(i)
        stored: dict[str, str] = {}
        for i, tid in enumerate(trajs["trajectory_id"].to_pylist()):
            mine = steps.take(rows_of.get(tid, [])) if steps is not None else STEPS.empty_table()
            stored[tid] = fingerprint(trajs.slice(i, 1), mine)
        same = [c for c in self.collisions if stored.get(c.trajectory_id) == c.digest]
        return same, [c for c in self.collisions if stored.get(c.trajectory_id) != c.digest]

    def flush(self) -> None:
        """Write the staged batch as new (still unpublished) files."""
        if not self.trajs:
            return
        assert self.txn is not None, "use StagedImport as a context manager"
        trajs = conform(pa.Table.from_pylist(self.trajs, schema=TRAJECTORIES), "trajectories")
        steps = conform(pa.Table.from_pylist(self.steps, schema=STEPS), "steps").sort_by(
            [("trajectory_id", "ascending"), ("step", "ascending")])
        for table, data in (("trajectories", trajs), ("steps", steps)):
            self._write(table, data, trajs)
        self.written += 1
        self.trajs, self.steps = [], []

    def _write(self, table: str, data: pa.Table, trajs: pa.Table) -> None:
        """New rows of `table`, into the hive partition folders its files already use.

        DuckDB reads a table's files as partitions only when every file is in one: a file beside them would stop
        the corpus from opening.
        """
        assert self.txn is not None
        keys = self.partitions.get(table)
        if not keys or not data.num_rows:
            self.txn.write(table, data)
            return
        folders = partition_folders(data, trajs, keys, f"{self.root}: {table}")
        for folder in sorted(set(folders)):
            self.txn.write(table, data.filter(pa.array([f == folder for f in folders])), partition=folder)

    def abort(self) -> None:
        """Discard everything staged (the corpus stays as it was)."""
        if self.txn is not None:
            self.txn.abort()

    def commit(self) -> None:
        """Publish the import: one manifest switch."""
        assert self.txn is not None, "use StagedImport as a context manager"
        self.flush()
        if self.txn.created and self.written == 0:  # a new corpus with nothing in it is still a valid corpus
            self.txn.write("trajectories", TRAJECTORIES.empty_table())
            self.txn.write("steps", STEPS.empty_table())
        if self.to_replace:
            self._drop_stale_replays()
            self._rewrite_without(self.to_replace)
        manifest = self.txn.snapshot.manifest
        self.txn.update(sources=sorted(set(manifest.get("sources") or []) | self.sources))
        self.txn.commit()
        self.done = True

    def _rewrite_without(self, ids: set[str]) -> None:
        """Existing files that hold replaced ids: rewritten without them, in this transaction."""
        assert self.txn is not None
        value_set = pa.array(sorted(ids))
        for entry in self.txn.snapshot.files:
            data = read_table(self.root / entry.path)
            keep = data.filter(pc.invert(pc.is_in(data["trajectory_id"], value_set=value_set)))
            if keep.num_rows == data.num_rows:
                continue
            self.txn.remove([entry])
            if keep.num_rows:  # in the folder it was in (its hive partition, if any)
                folder = entry.path.rsplit("/", 1)[0].removeprefix(entry.table).strip("/")
                self.txn.write(entry.table, keep, partition=folder or None)

    def _drop_stale_replays(self) -> None:
        """Cached replays of replaced trajectories no longer match their steps: drop them first."""
        for ckpt in replay_checkpoints(self.root):
            dataset = replay_dataset(self.root, ckpt)
            with dataset.transaction(create=new_cache(ckpt)) as txn:
                drop = [e for e in txn.snapshot.files if set(e.meta["trajectories"]) & self.to_replace]
                if drop:
                    # files shared with other trajectories go too: those are replayed again on demand
                    txn.remove(drop)
                    txn.commit()


def partition_folders(data: pa.Table, trajs: pa.Table, keys: list[str], what: str) -> list[str]:
    """Each row's hive partition folder (`key=value/...`): its own column, else its trajectory's.

    A key the rows cannot give, or a value that cannot be one folder name, refuses the import (`what` names it).
    """
    per_key = []
    for key in keys:
        if key in data.column_names:
            values = data[key].to_pylist()
        elif key in trajs.column_names:
            of = dict(zip(trajs["trajectory_id"].to_pylist(), trajs[key].to_pylist(), strict=True))
            values = [of[t] for t in data["trajectory_id"].to_pylist()]
        else:
            raise CorpusError(f"{what}: the files are partitioned by {key!r}, which the imported runs do not have")
        bad = [v for v in values if v is None or str(v) in ("", ".", "..") or any(c in str(v) for c in "/\\=")]
        if bad:
            raise CorpusError(f"{what}: the files are partitioned by {key!r}, and an imported run's value {bad[0]!r} "
                              "cannot name a partition folder")
        per_key.append([f"{key}={v}" for v in values])
    return ["/".join(parts) for parts in zip(*per_key, strict=True)]
