"""`horizonlens sample` and `horizonlens build-checkpoint`: the sample corpus and the sample checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from horizonlens.cli.base import app, fail, progress_bar, sample_checkpoint_path, sample_corpus_path


@app.command()
def sample(out: Annotated[Path, typer.Argument(help="Directory to write the corpus to.")],
           trajectories: Annotated[int, typer.Option(help="Number of trajectories.")] = 1200,
           seed: Annotated[int, typer.Option(help="Random seed; the same seed gives identical files.")] = 0,
           trials: Annotated[int, typer.Option(help="Trials per agent and task (for pass^k); every task is run by "
                                                    "its domain teacher, two student checkpoints and a baseline.")] = 3,
           overwrite: Annotated[bool, typer.Option(help="Replace an existing corpus at OUT.")] = False) -> None:
    """Generate a realistic sample corpus from simulated agents acting in simulated worlds."""
    from horizonlens.corpus.files import CorpusError
    from horizonlens.sample.generate import generate_corpus

    progress, task = progress_bar(trajectories, "simulating")
    try:
        with progress:
            manifest = generate_corpus(str(out), trajectories, seed=seed, trials=trials, overwrite=overwrite,
                                       progress=lambda n: progress.advance(task, n))
    except CorpusError as exc:
        fail(str(exc))
    typer.echo(f"wrote {trajectories} trajectories to {out} (seed {manifest['generator']['seed']})")


@app.command("build-checkpoint")
def build_checkpoint_cmd(out: Annotated[Path, typer.Argument(help="Where to write the checkpoint (the bundled one "
                                                                  "is sample_data/checkpoint).")],
                         corpus: Annotated[Optional[str], typer.Option(help="Corpus to train on, a directory or "
                                                                            "s3://bucket/prefix (default: the bundled "
                                                                            "sample corpus).")] = None,
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
