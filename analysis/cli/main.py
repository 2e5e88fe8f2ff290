"""The `horizonlens` command line: one entry point over the same functions the app uses."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer
from typer.core import TyperGroup

from horizonlens.errors import HorizonLensError


class _Commands(TyperGroup):
    """Every command's user errors (the HorizonLensError family) end as one red line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HorizonLensError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None


app = typer.Typer(cls=_Commands, add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Horizon Lens: browse long-horizon agent trajectories, replay them through a MoE "
                       "checkpoint, measure error compounding.")



def _sample_corpus() -> Path:
    from horizonlens.sample.bundled import sample_corpus

    return sample_corpus(log=lambda m: typer.secho(m, err=True))


def _sample_checkpoint() -> Path:
    from horizonlens.sample.bundled import sample_checkpoint

    return sample_checkpoint()


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _progress(total: int, label: str):  # noqa: ANN202 - rich type kept out of the signature
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        transient=not sys.stderr.isatty(), disable=not sys.stderr.isatty())
    return progress, progress.add_task(label, total=total)


@app.command()
def sample(out: Path = typer.Argument(..., help="Directory to write the corpus to."),
           trajectories: int = typer.Option(1200, help="Number of trajectories."),
           seed: int = typer.Option(0, help="Random seed; the same seed gives identical files."),
           trials: int = typer.Option(4, help="Trials per task (for pass^k)."),
           overwrite: bool = typer.Option(False, help="Replace an existing corpus at OUT.")) -> None:
    """Generate a realistic sample corpus from simulated agents acting in simulated worlds."""
    from horizonlens.corpus.io import CorpusError
    from horizonlens.sample.generate import generate_corpus

    progress, task = _progress(trajectories, "simulating")
    try:
        with progress:
            manifest = generate_corpus(str(out), trajectories, seed=seed, trials=trials, overwrite=overwrite,
                                       progress=lambda n: progress.advance(task, n))
    except CorpusError as exc:
        _fail(str(exc))
    typer.echo(f"wrote {trajectories} trajectories to {out} (seed {manifest['generator']['seed']})")


@app.command()
def sql(corpus: Path = typer.Argument(..., help="Corpus directory."),
        query: str = typer.Argument(..., help="One read-only SELECT over the views trajectories, steps, "
                                              "replay_steps, routing."),
        row_cap: int = typer.Option(1000, help="At most this many rows."),
        timeout: float = typer.Option(30.0, help="Stop the query after this many seconds."),
        as_json: bool = typer.Option(False, "--json", help="Print rows as JSON lines.")) -> None:
    """Run a read-only SQL query over a corpus."""
    from horizonlens.corpus.io import CorpusError
    from horizonlens.corpus.sql import SqlError, run_sql
    from horizonlens.corpus.store import open_store

    try:
        store = open_store(corpus)
        result = run_sql(store, query, row_cap=row_cap, timeout_s=timeout)
    except (CorpusError, SqlError) as exc:
        _fail(str(exc))
    if as_json:
        for row in result.table.to_pylist():
            typer.echo(json.dumps(row, default=str, ensure_ascii=False))
    else:
        typer.echo(result.table.to_pandas().to_string(index=False, max_colwidth=60))
    if result.truncated:
        typer.secho(f"(stopped at {result.row_cap} rows)", err=True)


@app.command("import")
def import_cmd(paths: list[Path] = typer.Argument(..., help="Files or directories to import."),
               into: Path = typer.Option(..., "--into", help="Corpus directory (created if missing)."),
               fmt: str = typer.Option("auto", "--format", help="auto, or one of: atif, who-and-when, openhands, "
                                                                 "mini-swe-agent, inspect, swe-agent, openai-chat."),
               replace: bool = typer.Option(False, help="Update trajectories that are already in the corpus."),
               strict: bool = typer.Option(False, help="Import nothing if any record is malformed.")) -> None:
    """Convert agent logs (tau-bench, SWE-agent, mini-swe-agent, ATIF, Who&When, Inspect AI, OpenHands,
    OpenAI chat) into a corpus.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from horizonlens.corpus.importers import ImportFailed, import_paths
    from horizonlens.corpus.io import CorpusError

    progress = Progress(SpinnerColumn(), TextColumn("importing: {task.completed:,} records"), TimeElapsedColumn(),
                        disable=not sys.stderr.isatty(), transient=True)
    task = progress.add_task("import", total=None)
    try:
        with progress:
            report = import_paths(paths, into, fmt=fmt, replace=replace, strict=strict,
                                  progress=lambda n: progress.advance(task, n))
    except (ImportFailed, CorpusError) as exc:
        _fail(str(exc))
    for problem in report.problems[:50]:
        typer.secho(f"skipped: {problem}", fg=typer.colors.YELLOW, err=True)
    if len(report.problems) > 50:
        typer.secho(f"... and {len(report.problems) - 50} more problems", fg=typer.colors.YELLOW, err=True)
    typer.echo(report.summary())


@app.command()
def index(corpus: Path = typer.Argument(..., help="Corpus directory.")) -> None:
    """Build the word index that makes full-text search fast (rebuild after adding files by hand)."""
    from horizonlens.corpus.io import CorpusError, read_manifest
    from horizonlens.corpus.search_index import build_index

    try:
        read_manifest(corpus)
    except CorpusError as exc:
        _fail(str(exc))
    built = build_index(corpus)
    typer.echo(f"indexed {built['rows']:,} (word, trajectory) pairs in {built['build_s']:.1f}s")


@app.command()
def replay(corpus: Path = typer.Argument(..., help="Corpus directory (replays are cached inside it)."),
           checkpoint: Optional[Path] = typer.Option(None, help="MoE checkpoint directory (default: the bundled "
                                                                "sample checkpoint)."),
           trajectory: list[str] = typer.Option([], "--trajectory", "-t", help="Trajectory id (repeatable)."),
           limit: Optional[int] = typer.Option(None, help="Replay at most N trajectories (shortest first)."),
           domain: list[str] = typer.Option([], help="Only trajectories of this domain (repeatable)."),
           max_tokens: Optional[int] = typer.Option(None, help="Skip trajectories with more estimated tokens."),
           per_domain: Optional[int] = typer.Option(None, help="Only the first N trajectories (by id) per domain."),
           chunk_size: int = typer.Option(512, help="Tokens per forward call."),
           device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ..."),
           dtype: str = typer.Option("auto", help="auto (CUDA: bfloat16, CPU: float32), float32, bfloat16."),
           device_map: Optional[str] = typer.Option(None, help="Spread a large model over GPUs, e.g. 'auto' "
                                                                "(needs accelerate)."),
           allow_pickle: bool = typer.Option(False, help="Allow pickle (.bin) weights; they can run code."),
           trust_remote_code: bool = typer.Option(False, help="Allow the checkpoint's own Python code."),
           allow_dense: bool = typer.Option(False, help="Replay a non-MoE model (surprisal, no routing).")) -> None:
    """Replay trajectories through a checkpoint into the corpus's replay cache (resumable)."""
    from horizonlens.corpus.io import CorpusError
    from horizonlens.corpus.store import TrajectoryFilter, open_store
    from horizonlens.model.batch import replay_many
    from horizonlens.model.cache import ReplayCache
    from horizonlens.model.loader import CheckpointError, load_checkpoint
    from horizonlens.model.replay import ReplayConfig

    checkpoint = checkpoint or _sample_checkpoint()
    try:
        store = open_store(corpus)
        loaded = load_checkpoint(checkpoint, device=device, dtype=dtype, allow_pickle=allow_pickle,
                                 trust_remote_code=trust_remote_code, allow_dense=allow_dense, device_map=device_map)
    except (CorpusError, CheckpointError) as exc:
        _fail(str(exc))
    ids = list(trajectory)
    if not ids:
        flt = TrajectoryFilter(domains=list(domain))
        ids, offset = [], 0
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
    missing = [t for t in trajectory if store.trajectory(t) is None]  # ids from the corpus itself exist
    if missing:
        _fail(f"no such trajectory: {missing[0]}")
    cache = ReplayCache(store.root, loaded.checkpoint_id)
    typer.echo(f"checkpoint {loaded.checkpoint_id} ({loaded.architecture}, {len(loaded.routers)} MoE layers, "
               f"{loaded.device}, {str(loaded.dtype).replace('torch.', '')}); {len(ids)} trajectories")
    progress, task = _progress(len(ids), "replaying")
    with progress:
        done, skipped = replay_many(store, loaded, ids, ReplayConfig(chunk_size=chunk_size),
                                    on_done=lambda tid, ran: progress.advance(task, 1))
    typer.echo(f"replayed {done}, already cached {skipped}; cache: {cache.root}")


def _first_per_domain(store: Any, ids: list[str], n: int) -> list[str]:
    """The first n ids (sorted) of each domain among `ids`: a small, stable, balanced subset."""
    rows = store.query("SELECT trajectory_id, domain FROM trajectories ORDER BY trajectory_id").to_pylist()
    wanted, taken, out = set(ids), {}, []
    for r in rows:
        if r["trajectory_id"] in wanted and taken.get(r["domain"], 0) < n:
            taken[r["domain"]] = taken.get(r["domain"], 0) + 1
            out.append(r["trajectory_id"])
    return out


@app.command("build-checkpoint")
def build_checkpoint_cmd(out: Path = typer.Argument(..., help="Where to write the checkpoint (the bundled one is "
                                                               "sample_data/checkpoint)."),
                         corpus: Optional[Path] = typer.Option(None, help="Corpus to train on (default: the bundled "
                                                                          "sample corpus)."),
                         steps: int = typer.Option(700, help="Optimizer steps (fixed, for determinism)."),
                         seed: int = typer.Option(0, help="Random seed."),
                         compare: bool = typer.Option(True, help="Also report routing structure vs random init."),
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

    from horizonlens.corpus.store import open_store
    from horizonlens.sample.checkpoint import BuildConfig, build_checkpoint, compare_with_random_init

    store = open_store(corpus or _sample_corpus())
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
    info = build_shape(shape, out, _sample_checkpoint(), layers=layers, experts=experts, seed=seed)
    typer.echo(f"wrote {out}: {info['note']}")
    typer.echo(json.dumps({k: info[k] for k in ("name", "layers", "experts", "top_k", "parameters")}))


def _records(df: Any) -> list[dict[str, Any]]:
    """DataFrame → JSON-safe records (NaN/inf → null)."""
    import math

    out = []
    for row in df.to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and not math.isfinite(v) else
                        v.item() if hasattr(v, "item") else v) for k, v in row.items()})
    return out


@app.command()
def metrics(corpus: Path = typer.Argument(..., help="Corpus directory."),
            by: Optional[str] = typer.Option(None, help="Facet: domain, agent, teacher or source."),
            checkpoint: Optional[Path] = typer.Option(None, help="Checkpoint whose cached replays to include."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
    """Corpus-level error-compounding figures (and model-side ones with --checkpoint)."""
    from horizonlens.corpus.io import CorpusError
    from horizonlens.corpus.store import open_store
    from horizonlens.metrics import attribution, compounding

    if by is not None and by not in compounding.FACETS:
        _fail(f"--by must be one of {', '.join(compounding.FACETS)}")
    try:
        store = open_store(corpus)
    except CorpusError as exc:
        _fail(str(exc))
    fits = compounding.success_vs_length(store, by)
    ckpt_id = None
    if checkpoint is not None:
        from horizonlens.model.loader import checkpoint_id

        ckpt_id = checkpoint_id(checkpoint)
    tables = {
        "step_error_rate": compounding.step_error_rate(store, by),
        "survival": compounding.survival(store, by),
        "self_conditioning": compounding.self_conditioning(store, by),
        "previous_step": compounding.previous_step(store, by),
        "recovery": compounding.recovery(store, by),
        "success_vs_length": fits["fits"],
        "pass_k": compounding.pass_k(store, by),
        "attribution": attribution.accuracy(attribution.predictions(store, ckpt_id)),
    }
    if ckpt_id and ckpt_id in store.replay_checkpoints:
        from horizonlens.metrics import model_side

        tables["model_by_step"] = model_side.signals_by_step(store, ckpt_id, bucket=10)
        tables["model_around_failures"] = model_side.around_failures(store, ckpt_id)
    elif ckpt_id:
        typer.secho(f"note: no cached replays for {ckpt_id} in this corpus (run `horizonlens replay`)", err=True)
    if as_json:
        typer.echo(json.dumps({name: _records(df) for name, df in tables.items()}, indent=1, default=str))
        return
    titles = {"step_error_rate": "Step error rate p̂ (95% Wilson) and independent-errors horizons",
              "survival": "Kaplan–Meier survival to the first failed check (first 15 t)",
              "self_conditioning": "Self-conditioning: P(fail | j earlier failures)",
              "previous_step": "P(fail | previous check)", "recovery": "Recovery after a failed check",
              "success_vs_length": "Success vs horizon length (logistic on log2 steps)",
              "pass_k": "pass^k", "attribution": "Decisive-step attribution accuracy",
              "model_by_step": "Model signals by step (buckets of 10)",
              "model_around_failures": "Model signals around checks"}
    for name, df in tables.items():
        typer.secho(f"\n{titles[name]}", bold=True)
        shown = df.groupby("group").head(15) if name == "survival" and not df.empty else df
        typer.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}") if not df.empty else "(no data)")


@app.command()
def bench(scale: str = typer.Option("small", help="tiny (2k), small (10k), medium (10k+100k), "
                                                   "large (10k+100k+1M trajectories)."),
          out: Path = typer.Option(Path("bench"), help="Where RESULTS.md and results JSON go."),
          data: Optional[Path] = typer.Option(None, help="Where the generated corpora live (default OUT/data)."),
          repeats: int = typer.Option(5, help="Repetitions per measurement."),
          app_timings: bool = typer.Option(True, "--app/--no-app", help="Also time the app in headless Chromium.")
          ) -> None:
    """Reproducible benchmarks at scale, each figure beside a baseline measured in the same run."""
    from horizonlens.bench.run import run

    try:
        run(scale, out, repeats=repeats, data=data, with_app=app_timings, log=typer.echo)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(f"wrote {out / 'RESULTS.md'}")


@app.command()
def serve(corpus: Optional[Path] = typer.Option(None, help="Corpus directory to open (default: a copy of the "
                                                           "bundled sample corpus, made on first use)."),
          checkpoint: Optional[Path] = typer.Option(None, help="MoE checkpoint directory (optional; default with "
                                                               "the sample corpus: the bundled sample checkpoint)."),
          host: str = typer.Option("127.0.0.1", help="Address to bind; 127.0.0.1 keeps it local."),
          port: int = typer.Option(8501, help="Port."),
          headless: bool = typer.Option(True, help="Do not open a browser window.")) -> None:
    """Start the Streamlit app (this process becomes the server: stopping it stops the app)."""
    from importlib.resources import files

    from horizonlens.corpus.io import CorpusError, read_manifest

    if corpus is None:
        corpus = _sample_corpus()
        checkpoint = checkpoint or _sample_checkpoint()
    try:
        read_manifest(corpus)
    except CorpusError as exc:
        _fail(f"{exc}\n(create one with `horizonlens sample DIR`)")
    env = dict(os.environ, HORIZONLENS_CORPUS=str(corpus.resolve()))
    env["HORIZONLENS_CHECKPOINT"] = ""
    if checkpoint is not None and checkpoint.exists():
        env["HORIZONLENS_CHECKPOINT"] = str(checkpoint.resolve())
    elif checkpoint is not None:
        typer.secho(f"note: checkpoint {checkpoint} not found; starting without one", err=True)
    # resolve(): in a source checkout the installed file is a link into app/; run the real file
    main_script = Path(str(files("horizonlens.app") / "main.py")).resolve()
    cmd = [sys.executable, "-m", "streamlit", "run", str(main_script), "--server.address", host,
           "--server.port", str(port), "--server.headless", str(headless).lower(),
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]
    typer.echo(f"Horizon Lens on http://{host}:{port}  (corpus: {corpus})", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not a child process: a supervisor's SIGTERM reaches the server itself, so nothing is left running
    os.execve(sys.executable, cmd, env)


def main() -> None:  # pragma: no cover - console entry
    """The console entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
