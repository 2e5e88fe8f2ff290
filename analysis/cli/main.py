"""The `horizonlens` command line: one entry point over the same functions the app uses."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from horizonlens.errors import HorizonLensError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class _Commands(TyperGroup):
    """Every command's user errors (the HorizonLensError family) end as one red line and exit code 1."""

    # Any: ctx is the Context of the click that typer runs on, which recent typer vendors under a private name.
    def invoke(self, ctx: Any) -> Any:
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


def _progress(total: int, label: str) -> tuple[Progress, TaskID]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        transient=not sys.stderr.isatty(), disable=not sys.stderr.isatty())
    return progress, progress.add_task(label, total=total)


@app.command()
def sample(out: Annotated[Path, typer.Argument(help="Directory to write the corpus to.")],
           trajectories: Annotated[int, typer.Option(help="Number of trajectories.")] = 1200,
           seed: Annotated[int, typer.Option(help="Random seed; the same seed gives identical files.")] = 0,
           trials: Annotated[int, typer.Option(help="Trials per task (for pass^k).")] = 4,
           overwrite: Annotated[bool, typer.Option(help="Replace an existing corpus at OUT.")] = False) -> None:
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
def sql(corpus: Annotated[Path, typer.Argument(help="Corpus directory.")],
        query: Annotated[str, typer.Argument(help="One read-only SELECT over the views trajectories, steps, "
                                                  "replay_steps, routing.")],
        row_cap: Annotated[int, typer.Option(help="At most this many rows.")] = 1000,
        timeout: Annotated[float, typer.Option(help="Stop the query after this many seconds.")] = 30.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print rows as JSON lines.")] = False) -> None:
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
def import_cmd(paths: Annotated[list[Path], typer.Argument(help="Files or directories to import.")],
               into: Annotated[Path, typer.Option("--into", help="Corpus directory (created if missing).")],
               fmt: Annotated[str, typer.Option("--format", help="auto, or one of: atif, who-and-when, openhands, "
                                                                 "mini-swe-agent, inspect, swe-agent, openai-chat.")
                              ] = "auto",
               replace: Annotated[bool, typer.Option(help="Update trajectories that are already in the corpus.")
                                  ] = False,
               strict: Annotated[bool, typer.Option(help="Import nothing if any record is malformed.")] = False,
               ) -> None:
    """Convert agent logs into a corpus.

    Formats: tau-bench, SWE-agent, mini-swe-agent, ATIF, Who&When, Inspect AI, OpenHands, OpenAI chat.
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
def index(corpus: Annotated[Path, typer.Argument(help="Corpus directory.")]) -> None:
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
def replay(corpus: Annotated[Path, typer.Argument(help="Corpus directory (replays are cached inside it).")],
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
           device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
           dtype: Annotated[str, typer.Option(help="auto (CUDA: bfloat16, CPU: float32), float32, bfloat16.")
                            ] = "auto",
           device_map: Annotated[Optional[str], typer.Option(help="Spread a large model over GPUs, e.g. 'auto' "
                                                                  "(needs accelerate).")] = None,
           allow_pickle: Annotated[bool, typer.Option(help="Allow pickle (.bin) weights; they can run code.")
                                   ] = False,
           trust_remote_code: Annotated[bool, typer.Option(help="Allow the checkpoint's own Python code.")] = False,
           allow_dense: Annotated[bool, typer.Option(help="Replay a non-MoE model (surprisal, no routing).")
                                  ] = False) -> None:
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
    trajectory, domain = trajectory or [], domain or []  # a repeatable option given no times arrives as None
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
    wanted, out = set(ids), []
    taken: dict[str, int] = {}
    for r in rows:
        if r["trajectory_id"] in wanted and taken.get(r["domain"], 0) < n:
            taken[r["domain"]] = taken.get(r["domain"], 0) + 1
            out.append(r["trajectory_id"])
    return out


@app.command("build-checkpoint")
def build_checkpoint_cmd(out: Annotated[Path, typer.Argument(help="Where to write the checkpoint (the bundled one "
                                                                  "is sample_data/checkpoint).")],
                         corpus: Annotated[Optional[Path], typer.Option(help="Corpus to train on (default: the "
                                                                             "bundled sample corpus).")] = None,
                         steps: Annotated[int, typer.Option(help="Optimizer steps (fixed, for determinism).")] = 700,
                         seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
                         compare: Annotated[bool, typer.Option(help="Also report routing structure vs random init.")
                                            ] = True) -> None:
    """Train the bundled sample checkpoint (tiny Qwen3.5-MoE) on a corpus, on CPU."""
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


def _records(df: Any) -> list[dict[str, Any]]:
    """DataFrame → JSON-safe records (NaN/inf → null)."""
    import math

    out = []
    for row in df.to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and not math.isfinite(v) else
                        v.item() if hasattr(v, "item") else v) for k, v in row.items()})
    return out


@app.command()
def metrics(corpus: Annotated[Path, typer.Argument(help="Corpus directory.")],
            by: Annotated[Optional[str], typer.Option(help="Facet: domain, agent, teacher or source.")] = None,
            checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint whose cached replays to include.")
                                  ] = None,
            as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False) -> None:
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
def bench(scale: Annotated[str, typer.Option(help="tiny (2k), small (10k), medium (10k+100k), "
                                                 "large (10k+100k+1M trajectories).")] = "small",
          out: Annotated[Path, typer.Option(help="Where RESULTS.md and results JSON go.")] = Path("bench"),
          data: Annotated[Optional[Path], typer.Option(help="Where the generated corpora live (default OUT/data).")
                          ] = None,
          repeats: Annotated[int, typer.Option(help="Repetitions per measurement.")] = 5,
          app_timings: Annotated[bool, typer.Option("--app/--no-app", help="Also time the app in headless Chromium.")
                                 ] = True,
          ) -> None:
    """Reproducible benchmarks at scale, each figure beside a baseline measured in the same run."""
    from horizonlens.bench.run import run

    try:
        run(scale, out, repeats=repeats, data=data, with_app=app_timings, log=typer.echo)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(f"wrote {out / 'RESULTS.md'}")


@app.command()
def serve(corpus: Annotated[Optional[Path], typer.Option(help="Corpus directory to open (default: a copy of the "
                                                              "bundled sample corpus, made on first use).")] = None,
          checkpoint: Annotated[Optional[Path], typer.Option(help="MoE checkpoint directory (optional; default with "
                                                                  "the sample corpus: the bundled sample "
                                                                  "checkpoint).")] = None,
          host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it local.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port.")] = 8501,
          headless: Annotated[bool, typer.Option(help="Do not open a browser window.")] = True) -> None:
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
