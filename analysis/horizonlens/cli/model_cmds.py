"""Model commands: replay trajectories through a checkpoint, build the sample checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from horizonlens.cli.base import app, fail, replay_progress, sample_checkpoint_path, sample_corpus_path


@app.command()
def replay(corpus: Annotated[str, typer.Argument(help="Corpus directory or s3://bucket/prefix (replays are cached "
                                                      "inside it).")],
           checkpoint: Annotated[Optional[Path], typer.Option(help="MoE checkpoint directory (default: the bundled "
                                                                   "sample checkpoint).")] = None,
           trajectory: Annotated[Optional[list[str]], typer.Option("--trajectory", "-t",
                                                                   help="Trajectory id (repeatable).")] = None,
           limit: Annotated[Optional[int], typer.Option(help="Replay at most N trajectories (shortest first).")
                            ] = None,
           domain: Annotated[Optional[list[str]], typer.Option(help="Only trajectories of this domain (repeatable).")
                             ] = None,
           max_tokens: Annotated[Optional[int], typer.Option(help="Skip trajectories with more estimated tokens.")
                                 ] = None,
           per_domain: Annotated[Optional[int], typer.Option(help="Only the first N trajectories (by id) per "
                                                                  "domain.")] = None,
           chunk_size: Annotated[int, typer.Option(help="Tokens per forward call.")] = 512,
           device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ... (local engine)")] = "auto",
           dtype: Annotated[str, typer.Option(help="auto (CUDA: bfloat16, CPU: float32), float32, bfloat16.")
                            ] = "auto",
           device_map: Annotated[Optional[str], typer.Option(help="Spread a large model over GPUs, e.g. 'auto' "
                                                                  "(needs accelerate; local engine).")] = None,
           allow_pickle: Annotated[bool, typer.Option(help="Allow pickle (.bin) weights; they can run code.")
                                   ] = False,
           trust_remote_code: Annotated[bool, typer.Option(help="Allow the checkpoint's own Python code.")] = False,
           allow_dense: Annotated[bool, typer.Option(help="Replay a non-MoE model (surprisal, no routing).")
                                  ] = False,
           engine: Annotated[str, typer.Option(help="local (this process) or ray (a Ray cluster; needs "
                                                    "horizonlens[ray]).")] = "local",
           address: Annotated[Optional[str], typer.Option(help="Ray cluster to join: 'auto' (the one `ray start` "
                                                               "runs), ray://HOST:10001; default: a local cluster "
                                                               "for this run.")] = None,
           replicas: Annotated[Optional[int], typer.Option(help="Ray actors, each with its own copy of the "
                                                               "checkpoint (default: as many as the cluster fits).")
                               ] = None,
           gpus_per_replica: Annotated[float, typer.Option(help="GPUs per Ray actor: 0 replays on CPU; 2 spreads "
                                                                "one model over two GPUs.")] = 0.0,
           cpus_per_replica: Annotated[float, typer.Option(help="CPU cores per Ray actor.")] = 1.0,
           batch_tokens: Annotated[Optional[int], typer.Option(help="Estimated tokens per batch (one commit of one "
                                                                    "file per table; default: a few batches per "
                                                                    "replica, at most 262,144).")] = None,
           routing: Annotated[str, typer.Option(help="Routing to store: tokens (per-step aggregates and per-token "
                                                     "routing) or steps (per-step aggregates only, ~6x smaller "
                                                     "at 40 x 256).")] = "tokens",
           sample: Annotated[Optional[int], typer.Option(help="Replay a stratified random sample of N trajectories "
                                                             "(by domain and outcome) of those selected, and record "
                                                             "it: corpus statistics then use it by default.")
                             ] = None,
           seed: Annotated[int, typer.Option(help="Random seed of --sample.")] = 0,
           force: Annotated[bool, typer.Option(help="Replay even what is cached (replacing it).")] = False) -> None:
    """Replay trajectories through a checkpoint into the corpus's replay cache (resumable, idempotent)."""
    from horizonlens.model.batch import BatchDone, ReplayPlan, plan_replay, replay_many
    from horizonlens.model.replay import ReplayConfig
    from horizonlens.query.store import open_store
    from horizonlens.replays.cache import ReplayCache

    if engine not in ("local", "ray"):
        fail(f"--engine must be local or ray, not {engine!r}")
    checkpoint = checkpoint or sample_checkpoint_path()
    config = ReplayConfig(chunk_size=chunk_size, routing=routing)  # a bad --routing fails before loading anything
    store = open_store(corpus)  # a HorizonLensError ends as one red line (base.py)
    ids = _selected_ids(store, trajectory or [], domain or [], max_tokens, per_domain, limit)
    record = None
    if sample is not None:
        ids, record = _draw_sample(store, ids, sample, seed)
    load: dict[str, Any] = {"dtype": dtype, "allow_pickle": allow_pickle, "trust_remote_code": trust_remote_code,
            "allow_dense": allow_dense}
    display: dict[str, Any] = {}

    def on_plan(plan: ReplayPlan) -> None:
        typer.echo(f"{len(ids)} trajectories: {plan.skipped} already cached, {plan.trajectories} to replay "
                   f"(~{plan.tokens:,} tokens in {len(plan.batches)} batches)")
        display["progress"], display["advance"] = replay_progress(plan.trajectories, plan.tokens)
        display["progress"].start()

    def on_batch(done: BatchDone) -> None:
        display["advance"](done.trajectories, done.tokens, done.replayed_tokens)

    try:
        if engine == "ray":
            from horizonlens.model.ray_engine import RayOptions, replay_on_ray

            options = RayOptions(address=address, replicas=replicas, gpus_per_replica=gpus_per_replica,
                                 cpus_per_replica=cpus_per_replica, load=load)
            run = replay_on_ray(store, checkpoint, ids, config, options, batch_tokens, on_plan=on_plan, force=force,
                                on_start=lambda w: typer.echo(f"{len(w)} Ray workers: {', '.join(w)}"),
                                on_batch=on_batch)
            ckpt_id = _checkpoint_id(checkpoint)
        else:
            from horizonlens.model.loader import load_checkpoint

            loaded = load_checkpoint(checkpoint, device=device, device_map=device_map, **load)
            typer.echo(f"checkpoint {loaded.checkpoint_id} ({loaded.architecture}, {len(loaded.routers)} MoE layers, "
                       f"{loaded.device}, {str(loaded.dtype).replace('torch.', '')})")
            plan = plan_replay(store, loaded.checkpoint_id, ids, batch_tokens=batch_tokens, force=force,
                               tokens=routing == "tokens")
            on_plan(plan)
            run = replay_many(store, loaded, ids, config, plan=plan, on_batch=on_batch)
            ckpt_id = loaded.checkpoint_id
    finally:
        if "progress" in display:
            display["progress"].stop()
    if record is not None:
        ReplayCache(store.root, ckpt_id).write_selection(record)
        typer.echo(f"recorded the stratified random sample of {len(ids)} (seed {seed}) in the replay cache")
    typer.echo(f"replayed {run.replayed}, already cached {run.skipped}; {run.tokens:,} tokens in {run.seconds:.1f}s "
               f"({run.tokens_per_s:,.0f} tokens/s); cache: {ReplayCache(store.root, ckpt_id).root}")


def _draw_sample(store: Any, ids: list[str], n: int, seed: int) -> tuple[list[str], dict[str, Any]]:
    """A stratified random sample of n of these trajectories, and the record the cache keeps of it."""
    import pandas as pd

    from horizonlens.metrics.replay_set import selection_record, stratified_sample

    if n < 1:
        fail("--sample must be at least 1")
    rows = store.query("SELECT trajectory_id, domain, outcome FROM trajectories WHERE list_contains(?, trajectory_id)",
                       [ids]).to_pandas() if ids else pd.DataFrame(columns=["trajectory_id", "domain", "outcome"])
    drawn = stratified_sample(rows, n, seed)
    return drawn, selection_record(drawn, n, seed, len(rows))


def _checkpoint_id(path: Path) -> str:
    from horizonlens.model.loader import checkpoint_id

    return checkpoint_id(path)


def _selected_ids(store: Any, trajectory: list[str], domain: list[str], max_tokens: int | None,
                  per_domain: int | None, limit: int | None) -> list[str]:
    """The trajectories a replay command asks for: named ones, or the (filtered) corpus shortest first."""
    from horizonlens.query.store import TrajectoryFilter

    missing = [t for t in trajectory if store.trajectory(t) is None]
    if missing:
        fail(f"no such trajectory: {missing[0]}")
    ids = list(trajectory)
    if not ids:
        flt = TrajectoryFilter(domains=list(domain))
        offset = 0
        while True:  # page through the whole (filtered) corpus, shortest first
            page = store.list_trajectories(flt, sort="n_tokens", limit=1000, offset=offset)
            rows = page.rows.to_pylist()
            ids += [r["trajectory_id"] for r in rows if max_tokens is None or r["n_tokens"] <= max_tokens]
            offset += 1000
            if offset >= page.total:
                break
    if per_domain is not None:
        ids = _first_per_domain(store, ids, per_domain)
    if limit is not None:
        ids = ids[:limit]
    return ids


def _first_per_domain(store: Any, ids: list[str], n: int) -> list[str]:
    """The first n ids (sorted) of each domain among `ids`: a small, stable, balanced subset."""
    rows = store.query("SELECT trajectory_id, domain FROM trajectories ORDER BY trajectory_id").to_pylist()
    wanted, out = set(ids), []
    taken: dict[str, int] = {}
    for r in rows:
        if r["trajectory_id"] in wanted and taken.get(r["domain"], 0) < n:
            taken[r["domain"]] = taken.get(r["domain"], 0) + 1
            out.append(r["trajectory_id"])
    return out


@app.command()
def compact(corpus: Annotated[Path, typer.Argument(help="Corpus directory whose replay caches to compact.")],
            checkpoint_id: Annotated[Optional[str], typer.Option("--checkpoint-id",
                                                                 help="Only this checkpoint's cache (default: "
                                                                      "all).")] = None,
            as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False) -> None:
    """Rewrite replay caches as a few multi-trajectory files in the current routing format (atomic)."""
    from horizonlens.replays.compact import compact as run

    reports = run(corpus, checkpoint_id, log=lambda m: typer.echo(m, err=True))
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in reports], indent=1))
        return
    if not reports:
        typer.echo(f"{corpus}: no replay caches")
    for r in reports:
        typer.echo(f"{r.checkpoint_id}: {r.trajectories} trajectories ({r.converted} converted from format 1); "
                   f"{r.files_before} files, {r.bytes_before / 2**20:,.2f} MB -> {r.files_after} files, "
                   f"{r.bytes_after / 2**20:,.2f} MB")


@app.command("build-checkpoint")
def build_checkpoint_cmd(out: Annotated[Path, typer.Argument(help="Where to write the checkpoint (the bundled one "
                                                                  "is sample_data/checkpoint).")],
                         corpus: Annotated[Optional[Path], typer.Option(help="Corpus to train on (default: the "
                                                                             "bundled sample corpus).")] = None,
                         steps: Annotated[int, typer.Option(help="Optimizer steps (fixed, for determinism).")] = 700,
                         seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
                         compare: Annotated[bool, typer.Option(help="Also report routing structure vs random init.")
                                            ] = True,
                         shape: Annotated[Optional[str], typer.Option(
                             help="Instead of training: write a random-init checkpoint with a real model's routing "
                                  "topology (agents-a1, qwen3-30b-a3b, deepseek-v3, gpt-oss-120b); needs "
                                  "--random-init.")] = None,
                         random_init: Annotated[bool, typer.Option(
                             "--random-init", help="With --shape: untrained weights, hidden size 64 (runs on CPU)."
                         )] = False,
                         layers: Annotated[Optional[int], typer.Option(
                             help="With --shape: decoder layers (default: the real count).")] = None,
                         experts: Annotated[Optional[int], typer.Option(
                             help="With --shape: routed experts per layer (default: the real count).")] = None) -> None:
    """Train the bundled sample checkpoint (tiny Qwen3.5-MoE) on a corpus, on CPU.

    With --shape and --random-init, write an untrained checkpoint with a real model's routing topology instead.
    """
    if shape is not None or random_init or layers is not None or experts is not None:
        _build_shape(out, shape, random_init, layers, experts, seed)
        return
    import tempfile

    from horizonlens.query.store import open_store
    from horizonlens.sample.checkpoint import BuildConfig, build_checkpoint, compare_with_random_init

    store = open_store(corpus or sample_corpus_path())
    cfg = BuildConfig(steps=steps, seed=seed)
    report = build_checkpoint(store, out, cfg, log=typer.echo)
    if compare:
        with tempfile.TemporaryDirectory() as work:
            report["routing_vs_random_init"] = compare_with_random_init(store, Path(out), Path(work), cfg)
        (Path(out) / "training_report.json").write_text(json.dumps(report, indent=2) + "\n")
    typer.echo(json.dumps(report["heldout_loss"]))


def _build_shape(out: Path, shape: Optional[str], random_init: bool, layers: Optional[int],
                 experts: Optional[int], seed: int) -> None:
    """`build-checkpoint --shape NAME --random-init`: the tokenizer is the bundled checkpoint's."""
    from horizonlens.errors import CheckpointError
    from horizonlens.model.shapes import SHAPES, build_shape

    if shape is None or not random_init:
        raise CheckpointError(f"--shape NAME and --random-init go together (only untrained shape fixtures are "
                              f"offered); shapes: {', '.join(SHAPES)}")
    info = build_shape(shape, out, sample_checkpoint_path(), layers=layers, experts=experts, seed=seed)
    typer.echo(f"wrote {out}: {info['note']}")
    typer.echo(json.dumps({k: info[k] for k in ("name", "layers", "experts", "top_k", "parameters")}))
