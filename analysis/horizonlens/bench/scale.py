"""Benchmark corpora at 10k, 100k, 1M trajectories, made from the sample generator's output.

Simulating a million trajectories one by one would take hours on two cores, so a scaled corpus
is built from a generated base corpus (the bundled sample: 2,400 simulated trajectories) by
replication: each replica gets new trajectory and task ids, shifted timestamps and a tagged task
text. Tables are hive-partitioned by domain, sorted by trajectory_id inside each file (so row-group
statistics prune lookups), and written once, then reused.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from horizonlens.corpus.files import MANIFEST, ROW_GROUP_SIZE, corpus_dataset, new_manifest
from horizonlens.storage.atomic import write_json_atomic

SCALES = {"tiny": [2_000], "small": [10_000], "medium": [10_000, 100_000], "large": [10_000, 100_000, 1_000_000]}
REPLICAS_PER_FILE = 16


def _replica(table: pa.Table, r: int, with_task: bool) -> pa.Table:
    """Copy r of a base table: new ids (suffix ~rNNNN), timestamps shifted by r hours."""
    suffix = f"~r{r:04d}"
    cols = {name: table[name] for name in table.column_names}
    cols["trajectory_id"] = pc.binary_join_element_wise(table["trajectory_id"], pa.scalar(suffix), "")
    if "task_id" in cols:
        cols["task_id"] = pc.binary_join_element_wise(table["task_id"], pa.scalar(suffix), "")
    if with_task:
        cols["task"] = pc.binary_join_element_wise(pa.scalar(f"[replica {r}] "), table["task"], "")
    shift = pa.scalar(timedelta(hours=r), pa.duration("ms"))
    cols["started_at"] = pc.add(table["started_at"], shift)
    return pa.table(cols, schema=table.schema)


def build_scaled_corpus(base: Path, out: Path, n_trajectories: int,
                        log: Callable[[str], None] = lambda s: None) -> Path:
    """Write (once) a corpus of n_trajectories replicated from `base`; returns its path."""
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        existing = json.loads(manifest_path.read_text())
        if existing.get("bench", {}).get("trajectories") == n_trajectories and "files" in existing:
            return out
    trajs = pq.read_table(base / "trajectories")
    steps = pq.read_table(base / "steps")
    steps = steps.drop_columns([c for c in steps.column_names if c not in pq.read_schema(
        next((base / "steps").glob("*.parquet"))).names])
    per_replica = trajs.num_rows
    replicas = math.ceil(n_trajectories / per_replica)
    domains = pc.unique(trajs["domain"]).to_pylist()
    for d in domains:
        (out / "trajectories" / f"domain={d}").mkdir(parents=True, exist_ok=True)
        (out / "steps" / f"domain={d}").mkdir(parents=True, exist_ok=True)
    domain_of = dict(zip(trajs["trajectory_id"].to_pylist(), trajs["domain"].to_pylist(), strict=True))
    step_domain = pa.array([domain_of[t] for t in steps["trajectory_id"].to_pylist()])
    for start in range(0, replicas, REPLICAS_PER_FILE):
        stop = min(replicas, start + REPLICAS_PER_FILE)
        for d in domains:
            t_mask = pc.equal(trajs["domain"], d)
            s_mask = pc.equal(step_domain, d)
            t_part = trajs.filter(t_mask)
            s_part = steps.filter(s_mask)
            t_rows, s_rows = [], []
            for r in range(start, stop):
                keep = min(per_replica, n_trajectories - r * per_replica)
                if keep <= 0:
                    break
                t_rep = _replica(t_part, r, with_task=True)
                s_rep = _replica(s_part, r, with_task=False)
                if keep < per_replica:  # the last replica is partial: keep the first `keep` ids overall
                    allowed = pa.array(trajs["trajectory_id"].to_pylist()[:keep])
                    allowed = pc.binary_join_element_wise(allowed, pa.scalar(f"~r{r:04d}"), "")
                    t_rep = t_rep.filter(pc.is_in(t_rep["trajectory_id"], value_set=allowed))
                    s_rep = s_rep.filter(pc.is_in(s_rep["trajectory_id"], value_set=allowed))
                t_rows.append(t_rep)
                s_rows.append(s_rep)
            if not t_rows:
                continue
            name = f"part-{start:05d}.parquet"
            t_all = pa.concat_tables(t_rows).sort_by("trajectory_id")
            s_all = pa.concat_tables(s_rows).sort_by([("trajectory_id", "ascending"), ("step", "ascending")])
            pq.write_table(t_all, out / "trajectories" / f"domain={d}" / name, compression="zstd",
                           row_group_size=ROW_GROUP_SIZE)
            pq.write_table(s_all, out / "steps" / f"domain={d}" / name, compression="zstd",
                           row_group_size=ROW_GROUP_SIZE)
        log(f"  {min(stop * per_replica, n_trajectories):,} / {n_trajectories:,} trajectories written")
    manifest = new_manifest(["horizonlens-sample (replicated)"], bench={"trajectories": n_trajectories,
                                                                          "base": str(base), "replicas": replicas})
    write_json_atomic(manifest, manifest_path)
    corpus_dataset(out).record_listing()  # the files written above, with their rows, sizes and checksums
    return out


def write_json_files(base: Path, out: Path, n: int) -> Path:
    """The file-based-viewer baseline: one JSON file per trajectory (metadata + steps)."""
    if out.exists() and len(list(out.glob("*.json"))) >= n:
        return out
    out.mkdir(parents=True, exist_ok=True)
    trajs = pq.read_table(base / "trajectories").to_pylist()
    steps = pq.read_table(base / "steps").to_pylist()
    by_traj: dict[str, list[dict]] = {}
    for s in steps:
        by_traj.setdefault(s["trajectory_id"], []).append(s)
    for i in range(n):
        t = dict(trajs[i % len(trajs)])
        r = i // len(trajs)
        t["steps"] = by_traj[t["trajectory_id"]]
        t["trajectory_id"] = f"{t['trajectory_id']}~r{r:04d}"
        (out / f"{i:07d}.json").write_text(json.dumps(t, default=str))
    return out
