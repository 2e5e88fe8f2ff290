"""Scale-out measurements: local vs Ray replay, the replay cache's files, Explore on S3 vs local disk.

`python -m horizonlens.bench.scaleout CORPUS CHECKPOINT --trajectories N` works on copies of CORPUS
(never the corpus itself) and prints one JSON document. Each figure has its baseline from the same run:
the Ray engine against the local engine on the same trajectories, the batched cache against the
per-trajectory cache the corpus ships, the S3 corpus against the same files on local disk (the S3 server
is moto on 127.0.0.1, started for the run; it needs `moto[server]`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from horizonlens.bench.browser import free_port
from horizonlens.bench.timing import interleaved


def _cache_files(corpus: Path) -> dict[str, Any]:
    files = [p for p in (corpus / "replays").rglob("*.parquet")]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def _copy_without_replays(corpus: Path, dest: Path) -> Path:
    shutil.copytree(corpus, dest, ignore=shutil.ignore_patterns("replays"))
    return dest


def shipped_ids(corpus: Path, checkpoint: Path) -> list[str]:
    """The trajectories the corpus's own cache holds for this checkpoint (the before/after comparison's set)."""
    from horizonlens.model.loader import checkpoint_id
    from horizonlens.replays.cache import ReplayCache

    return sorted(ReplayCache(corpus, checkpoint_id(checkpoint)).cached_ids())


def bench_engines(corpus: Path, checkpoint: Path, n: int, work: Path, batch_tokens: int | None = None
                  ) -> dict[str, Any]:
    """Local engine vs a local Ray cluster on the same trajectories: tokens/s and the cache each leaves.

    Three variants, each into its own copy of the corpus: the local engine as it runs by default (torch
    uses every core), the local engine on one torch thread, and Ray with one 1-CPU actor per core. The
    trajectories are the first n that the corpus's shipped cache holds (so its files are the "before"),
    else the first n by id. They are split in two halves, run A B C then C B A, so a drift in the (shared)
    machine's load hits every variant alike. Throughput counts startup: loading the checkpoint, and for Ray
    starting the cluster and its actors.
    """
    from horizonlens.model.batch import replay_many
    from horizonlens.model.loader import load_checkpoint
    from horizonlens.model.ray_engine import RayOptions, replay_on_ray
    from horizonlens.model.replay import ReplayConfig
    from horizonlens.query.store import open_store

    ids = (shipped_ids(corpus, checkpoint) or open_store(corpus).query(
        "SELECT trajectory_id FROM trajectories ORDER BY trajectory_id LIMIT ?", [n]).column(0).to_pylist())[:n]
    halves = [ids[0::2], ids[1::2]]
    config = ReplayConfig()
    cpus = os.cpu_count() or 1
    variants = ("local", "local_1_thread", "ray")
    copies = {v: _copy_without_replays(corpus, work / v) for v in variants}
    totals = {v: {"tokens": 0, "seconds": 0.0, "batches": 0} for v in variants}
    default_threads = _threads()

    def run(variant: str, part: list[str]) -> None:
        import torch

        started = time.perf_counter()
        if variant == "ray":
            done = replay_on_ray(open_store(copies[variant]), checkpoint, part, config,
                                 RayOptions(replicas=cpus, cpus_per_replica=1, local_cpus=cpus), batch_tokens)
        else:
            torch.set_num_threads(1 if variant == "local_1_thread" else default_threads)
            done = replay_many(open_store(copies[variant]), load_checkpoint(checkpoint, device="cpu"), part, config,
                               batch_tokens=batch_tokens)
            torch.set_num_threads(default_threads)
        totals[variant]["seconds"] += time.perf_counter() - started
        totals[variant]["tokens"] += done.tokens
        totals[variant]["batches"] += done.batches

    for half, order in ((halves[0], variants), (halves[1], variants[::-1])):
        for variant in order:
            run(variant, half)
    out: dict[str, Any] = {"trajectories": len(ids), "cpus": cpus, "torch_threads_default": default_threads,
                           "ray_replicas": cpus, "order": "A B C on one half, C B A on the other"}
    for variant, t in totals.items():
        out[variant] = {**t, "tokens_per_s": t["tokens"] / t["seconds"], **_cache_files(copies[variant])}
    for variant in ("local", "local_1_thread"):
        out[f"ray_vs_{variant}_throughput"] = out["ray"]["tokens_per_s"] / out[variant]["tokens_per_s"]
    return out


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN")


@contextmanager
def local_s3(bucket: str, key_id: str, secret: str, start_timeout_s: float = 60.0) -> Iterator[str]:
    """An S3-compatible server (moto) on 127.0.0.1 with one bucket, for the block; yields its endpoint.

    The AWS_* variables are set the way a user would set them, and restored (the server stopped) afterwards.
    """
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = {k: os.environ.get(k) for k in AWS_VARIABLES}
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.1)  # polling interval of the port check, not a wait for the server
        os.environ.update(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret, AWS_REGION="us-east-1",
                          AWS_ENDPOINT_URL=endpoint)
        os.environ.pop("AWS_SESSION_TOKEN", None)
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def bench_s3_explore(corpus: Path, repeats: int = 15) -> dict[str, Any]:
    """The Explore query and opening one trajectory on an S3 copy of the corpus vs on local disk, interleaved.

    Explore = filter (two domains, failures, at least 10 steps) + sort + a page of 50 + the total count, as
    the bench of bench/README.md; the S3 server is moto on 127.0.0.1.
    """
    import boto3

    from horizonlens.query.filters import TrajectoryFilter
    from horizonlens.query.store import open_store

    with local_s3("bench", "bench", "bench") as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        for p in corpus.rglob("*"):
            if p.is_file() and "replays" not in p.parts and not p.name.startswith("."):
                s3.upload_file(str(p), "bench", f"corpus/{p.relative_to(corpus).as_posix()}")
        t = time.perf_counter()
        remote = open_store("s3://bench/corpus")
        open_remote_s = time.perf_counter() - t
        t = time.perf_counter()
        local = open_store(corpus)
        open_local_s = time.perf_counter() - t
        flt = TrajectoryFilter(domains=["search", "engineering"], outcomes=["failure"], min_steps=10)
        tid = local.list_trajectories(sort="trajectory_id", limit=1).rows["trajectory_id"][0].as_py()
        assert remote.list_trajectories(flt).rows.equals(local.list_trajectories(flt).rows)
        timings = interleaved({
            "explore_local": lambda: local.list_trajectories(flt, sort="started_at", descending=True),
            "explore_s3": lambda: remote.list_trajectories(flt, sort="started_at", descending=True),
            "open_trajectory_local": lambda: local.steps(tid),
            "open_trajectory_s3": lambda: remote.steps(tid),
        }, repeats=repeats, warmup=2)
        return {"open_store_s": {"local": open_local_s, "s3": open_remote_s}, "timings": timings,
                "explore_s3_vs_local": timings["explore_s3"]["median_s"] / timings["explore_local"]["median_s"],
                "open_trajectory_s3_vs_local": timings["open_trajectory_s3"]["median_s"]
                / timings["open_trajectory_local"]["median_s"]}


def main(argv: list[str] | None = None) -> None:
    """Run the measurements and print them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--trajectories", type=int, default=60, help="how many to replay with each engine")
    parser.add_argument("--batch-tokens", type=int, default=None)
    parser.add_argument("--skip-replay", action="store_true")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {"shipped_cache": {**_cache_files(args.corpus),
                                             "trajectories": len(shipped_ids(args.corpus, args.checkpoint))}}
    with tempfile.TemporaryDirectory() as work:
        if not args.skip_replay:
            out["engines"] = bench_engines(args.corpus, args.checkpoint, args.trajectories, Path(work),
                                           args.batch_tokens)
        out["s3"] = bench_s3_explore(args.corpus)
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
