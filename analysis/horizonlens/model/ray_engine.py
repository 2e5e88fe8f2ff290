"""The Ray engine: batch replay over a Ray cluster, one checkpoint copy per actor.

The driver (the process that runs `horizonlens replay --engine ray`) plans the run exactly as the local
engine does (model/batch.py: skip what is cached, token-balanced batches, longest first), starts
`replicas` actors that each load the checkpoint once (on their own GPU(s), or on CPU), and hands batches
to whichever actor is free through Ray's `ActorPool`. Actors return `ReplayResult`s; the driver publishes
each batch with `ReplayCache.write`, so it is the only writer of the cache manifest and the dataset
lock keeps its meaning. Actors run `replay_batch`, the call the local engine makes.

Failures: an actor that dies (out of memory, a killed process, a lost node) is restarted by Ray and its
batch retried on the new actor (`max_restarts`); a run that stops altogether (Ctrl-C, a dead driver)
leaves every committed batch in the cache and nothing else, and the same command resumes it.

Ray is an optional extra (`pip install 'horizonlens[ray]'`), imported only inside these functions.
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from horizonlens.errors import HorizonLensError, ReplayError
from horizonlens.model.batch import (
    Batch,
    BatchDone,
    ReplayPlan,
    ReplayRun,
    batch_steps,
    cache_meta,
    plan_replay,
    replay_batch,
)
from horizonlens.model.replay import ReplayConfig, ReplayResult
from horizonlens.replays.cache import ReplayCache

if TYPE_CHECKING:
    from horizonlens.query.store import CorpusStore

MISSING_RAY = "the Ray engine needs the optional extra: pip install 'horizonlens[ray]'"
CONNECT_TIMEOUT_S = 10.0  # a cluster address that does not answer a TCP connection within this is unreachable


@dataclass
class RayOptions:
    """Where and how wide to run; every field has a default that works on one machine."""

    address: str | None = None  # None: a local cluster for this run; "auto": the one `ray start` runs; ray://...
    replicas: int | None = None  # actors, each with its own copy of the checkpoint (default: what the cluster fits)
    gpus_per_replica: float = 0.0  # 0: replay on CPU; 1: one GPU each; 2: spread the model over two (device_map)
    cpus_per_replica: float = 1.0  # CPU cores per actor (its torch threads on CPU)
    max_restarts: int = 3  # a dead actor is restarted and its batch retried this many times
    local_cpus: int | None = None  # CPUs of the local cluster started when no address is given (default: all)
    load: dict[str, Any] = field(default_factory=dict)  # extra load_checkpoint arguments (dtype, allow_dense, ...)

    def __post_init__(self) -> None:
        """Refuse values no cluster can run, before anything starts (the CLI's options reach here first)."""
        if self.replicas is not None and (isinstance(self.replicas, bool) or self.replicas < 1):
            raise ReplayError(f"--replicas must be 1 or more, not {self.replicas}")
        if not (math.isfinite(self.cpus_per_replica) and self.cpus_per_replica > 0):
            raise ReplayError(f"--cpus-per-replica must be more than 0, not {self.cpus_per_replica}")
        if not (math.isfinite(self.gpus_per_replica) and self.gpus_per_replica >= 0):
            raise ReplayError(f"--gpus-per-replica must be 0 or more, not {self.gpus_per_replica}")
        if self.max_restarts < 0:
            raise ReplayError(f"max_restarts must be 0 or more, not {self.max_restarts}")
        if self.local_cpus is not None and self.local_cpus < 1:
            raise ReplayError(f"local_cpus must be 1 or more, not {self.local_cpus}")
        if self.address is not None and not self.address.strip():
            raise ReplayError("--address must name a Ray cluster: auto, HOST:PORT or ray://HOST:PORT")


def require_ray() -> Any:
    """The `ray` module, or a ReplayError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ReplayError(MISSING_RAY) from exc
    return ray


class ReplayWorker:
    """One replica: loads the checkpoint once, then replays batch after batch (runs inside a Ray actor)."""

    def __init__(self, checkpoint: str, load: dict[str, Any], config: ReplayConfig, threads: int):
        import torch

        from horizonlens.model.loader import load_checkpoint

        torch.set_num_threads(max(1, threads))
        self.config = config
        self.loaded = load_checkpoint(checkpoint, **load)

    def describe(self) -> dict[str, Any]:
        """The loaded checkpoint, and which process holds it."""
        return {**self.loaded.describe(), "worker": _worker_name()}

    def replay(self, work: list[tuple[str, list[dict[str, Any]]]]) -> tuple[str, float, list[ReplayResult]]:
        """Replay one batch; returns (worker, seconds, results)."""
        started = time.perf_counter()
        results = replay_batch(self.loaded, work, self.config)
        return _worker_name(), time.perf_counter() - started, results


def _worker_name() -> str:
    """ray:<pid>@<host>: which process on which node replayed a batch."""
    return f"ray:{os.getpid()}@{socket.gethostname()}"


def _load_args(options: RayOptions) -> dict[str, Any]:
    """load_checkpoint arguments for an actor: its GPU(s) if it has any (Ray sets CUDA_VISIBLE_DEVICES)."""
    load = dict(options.load)
    if options.gpus_per_replica > 0:
        load.setdefault("device", "cuda")
        if options.gpus_per_replica > 1:
            load.setdefault("device_map", "auto")  # one model over the actor's GPUs
    else:
        load.setdefault("device", "cpu")
    return load


def fit_replicas(resources: dict[str, float], options: RayOptions) -> int:
    """The replicas to start: as asked, or as many as the cluster fits; an error if they can never be placed."""
    kind, each = ("GPU", options.gpus_per_replica) if options.gpus_per_replica > 0 else \
        ("CPU", max(options.cpus_per_replica, 1e-9))
    have = resources.get(kind, 0.0)
    fits = int(have // each)
    if fits < 1:
        raise ReplayError(f"the Ray cluster has {have:g} {kind}(s) but one replica needs {each:g} "
                          f"(--{kind.lower()}s-per-replica; pass --gpus-per-replica 0 to replay on CPU)")
    if options.replicas and options.replicas > fits:
        raise ReplayError(f"{options.replicas} replicas x {each:g} {kind}(s) do not fit the Ray cluster's {have:g} "
                          f"{kind}(s); use --replicas {fits} or fewer")
    return options.replicas or fits


def _endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of a cluster address to reach over TCP; None for `auto` (Ray finds the local one itself)."""
    rest = address.strip()
    if rest.lower() in ("auto", "local"):
        return None
    if "://" in rest:
        rest = rest.split("://", 1)[1]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not host:
        raise ReplayError(f"--address {address!r} is not auto, HOST:PORT or ray://HOST:PORT")
    return host.strip("[]"), int(port)


def probe(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast if nothing answers at a cluster address: ray.init retries an unreachable one for minutes."""
    endpoint = _endpoint(address)
    if endpoint is None:
        return
    try:
        with socket.create_connection(endpoint, timeout=timeout_s):
            pass
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ReplayError(f"cannot reach a Ray cluster at {address} ({why} within {timeout_s:g} s); is the cluster "
                          "running, and is the address its head node's (`ray status` there shows it)?") from exc


def _connect(ray: Any, options: RayOptions) -> bool:
    """Join or start a cluster; True if this call started Ray (and so must shut it down)."""
    if options.address:  # also when Ray is already up here: a named cluster that does not answer is an error
        probe(options.address)
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False,
                              "configure_logging": True}
    if options.address:
        kwargs["address"] = options.address
    elif options.local_cpus:
        kwargs["num_cpus"] = options.local_cpus
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ReplayError(f"cannot reach a Ray cluster at {options.address or 'a new local cluster'} ({exc})") from exc
    return True


def _unwrap(exc: BaseException) -> BaseException:
    """The user error inside a failed Ray task, if there is one."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, HorizonLensError) else exc


def replay_on_ray(store: "CorpusStore", checkpoint: Path | str, trajectory_ids: Iterable[str],
                  config: ReplayConfig | None = None, options: RayOptions | None = None,
                  batch_tokens: int | None = None, on_plan: Callable[[ReplayPlan], None] | None = None,
                  on_start: Callable[[list[str]], None] | None = None,
                  on_batch: Callable[[BatchDone], None] | None = None, force: bool = False) -> ReplayRun:
    """Replay what the cache lacks on a Ray cluster; the driver publishes each batch (resumable).

    `force`: replay every id, replacing what is cached.
    """
    from horizonlens.model.loader import check_files, checkpoint_id

    ray = require_ray()
    from ray.util import ActorPool

    config = config or ReplayConfig()
    options = options or RayOptions()
    checkpoint = Path(checkpoint).resolve()
    check_files(checkpoint, allow_pickle=bool(options.load.get("allow_pickle")))
    ckpt_id = checkpoint_id(checkpoint)
    started = time.perf_counter()
    started_ray = _connect(ray, options)
    actors: list[Any] = []
    try:
        replicas = fit_replicas(ray.cluster_resources(), options)
        plan = plan_replay(store, ckpt_id, trajectory_ids, replicas=replicas, batch_tokens=batch_tokens,
                           force=force, tokens=config.routing == "tokens")
        if on_plan:
            on_plan(plan)
        run = ReplayRun(skipped=plan.skipped)
        if not plan.batches:
            return run
        worker_cls = ray.remote(ReplayWorker).options(
            num_cpus=options.cpus_per_replica, num_gpus=options.gpus_per_replica,
            max_restarts=options.max_restarts, max_task_retries=options.max_restarts)
        actors += [worker_cls.remote(str(checkpoint), _load_args(options), config, int(options.cpus_per_replica))
                  for _ in range(min(replicas, len(plan.batches)))]
        try:
            described = ray.get([a.describe.remote() for a in actors])
        except ray.exceptions.RayError as exc:
            raise ReplayError(f"the Ray workers could not load {checkpoint}: {_unwrap(exc)}") from exc
        for d in described:  # every node must hold the same checkpoint at this path
            if d["checkpoint_id"] != ckpt_id:
                raise ReplayError(f"{checkpoint} on worker {d['worker']} is checkpoint {d['checkpoint_id']}, not "
                                  f"{ckpt_id} as here: copy the same checkpoint to every node")
        run.workers = [d["worker"] for d in described]
        if on_start:
            on_start(run.workers)
        _drain(ray, ActorPool(actors), store, plan, ReplayCache(store.root, ckpt_id),
               cache_meta(described[0], config), run, on_batch)
        store.refresh_replays()
        run.seconds = time.perf_counter() - started
        return run
    finally:
        for actor in actors:  # on a shared cluster too: an interrupted run must not keep holding its GPUs
            ray.kill(actor)
        if started_ray:
            ray.shutdown()


def _drain(ray: Any, pool: Any, store: "CorpusStore", plan: ReplayPlan, cache: ReplayCache, meta: dict[str, Any],
           run: ReplayRun, on_batch: Callable[[BatchDone], None] | None) -> None:
    """Feed every batch to the pool; publish each result as it arrives (in completion order)."""
    tokens_of: dict[tuple[str, ...], int] = {}

    def submit(actor: Any, batch: Batch) -> Any:
        # called when an actor is free: a batch's steps are read just before it is sent
        tokens_of[batch.trajectory_ids] = batch.tokens
        return actor.replay.remote(batch_steps(store, batch))

    for batch in plan.batches:
        pool.submit(submit, batch)
    while pool.has_next():
        try:
            worker, seconds, results = pool.get_next_unordered()
        except ray.exceptions.RayError as exc:
            inner = _unwrap(exc)
            if isinstance(inner, HorizonLensError):
                raise ReplayError(f"{inner} ({run.replayed} trajectories were cached before this; rerun to resume)") \
                    from exc
            raise ReplayError(f"a Ray worker failed (after Ray's restarts and retries): {str(inner)[:500]}. "
                              f"{run.replayed} trajectories were cached; run the same command again to resume.") \
                from exc
        cache.write(results, meta)
        done = BatchDone(len(results), tokens_of.get(tuple(r.trajectory_id for r in results), 0),
                         sum(r.n_replayed for r in results), seconds, worker)
        run.replayed += done.trajectories
        run.tokens += done.replayed_tokens
        run.batches += 1
        if worker not in run.workers:
            run.workers.append(worker)  # a restarted actor
        if on_batch:
            on_batch(done)

