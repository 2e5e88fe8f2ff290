"""Running the app and the benchmarks."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from horizonlens.cli.base import app, fail, sample_checkpoint_path, sample_corpus_path


@app.command()
def bench(scale: Annotated[str, typer.Option(help="tiny (2k), small (10k), medium (10k+100k), "
                                                 "large (10k+100k+1M trajectories), none.")] = "small",
          out: Annotated[Path, typer.Option(help="Where RESULTS.md and results JSON go.")] = Path("bench"),
          data: Annotated[Optional[Path], typer.Option(help="Where the generated corpora live (default OUT/data).")
                          ] = None,
          repeats: Annotated[int, typer.Option(help="Repetitions per measurement.")] = 5,
          app_timings: Annotated[bool, typer.Option("--app/--no-app", help="Also time the app in headless Chromium.")
                                 ] = True,
          shape: Annotated[Optional[list[str]], typer.Option(
              help="Also replay at a real model's routing shape (agents-a1, qwen3-30b-a3b, deepseek-v3, "
                   "gpt-oss-120b; repeatable); with --scale none, only that.")] = None,
          ) -> None:
    """Reproducible benchmarks at scale, each figure beside a baseline measured in the same run."""
    from horizonlens.bench.run import run

    try:
        run(scale, out, repeats=repeats, data=data, with_app=app_timings, log=typer.echo, shapes=shape or [])
    except ValueError as exc:
        fail(str(exc))
    typer.echo(f"wrote {out / 'RESULTS.md'}")


@app.command()
def serve(corpus: Annotated[Optional[str], typer.Option(help="Corpus directory or s3://bucket/prefix to open "
                                                             "(default: a copy of the bundled sample corpus, made on "
                                                             "first use).")] = None,
          checkpoint: Annotated[Optional[Path], typer.Option(help="MoE checkpoint directory (optional; default with "
                                                                  "the sample corpus: the bundled sample "
                                                                  "checkpoint).")] = None,
          host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it local.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port.")] = 8501,
          headless: Annotated[bool, typer.Option(help="Do not open a browser window.")] = True) -> None:
    """Start the Streamlit app (this process becomes the server: stopping it stops the app)."""
    from importlib.resources import files

    from horizonlens.corpus.files import CorpusError, read_manifest
    from horizonlens.ingest.targets import MAX_UPLOAD_MB
    from horizonlens.storage.location import as_location

    if corpus is None:
        location = as_location(sample_corpus_path())
        checkpoint = checkpoint or sample_checkpoint_path()
    else:
        location = as_location(corpus)
    try:
        read_manifest(location)
    except CorpusError as exc:
        fail(f"{exc}\n(create one with `horizonlens sample DIR`)")
    # the location only: credentials reach the app through the AWS_* variables this process passes on
    env = dict(os.environ, HORIZONLENS_CORPUS=str(location.resolve()))
    env["HORIZONLENS_CHECKPOINT"] = ""
    if checkpoint is not None and checkpoint.exists():
        env["HORIZONLENS_CHECKPOINT"] = str(checkpoint.resolve())
    elif checkpoint is not None:
        typer.secho(f"note: checkpoint {checkpoint} not found; starting without one", err=True)
    main_script = Path(str(files("horizonlens.app") / "main.py"))
    cmd = [sys.executable, "-m", "streamlit", "run", str(main_script), "--server.address", host,
           "--server.port", str(port), "--server.headless", str(headless).lower(),
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
           # A served app does not reload its code, and a full garbage collection after every run (every step
           # change) cost as much as the step itself: together they were ~60% of the server's CPU per step.
           "--server.fileWatcherType", "none", "--runner.postScriptGC", "false",
           # one upload limit: the Import page's per-import limit (also in app/.streamlit/config.toml)
           "--server.maxUploadSize", str(MAX_UPLOAD_MB)]
    typer.echo(f"Horizon Lens on http://{host}:{port}  (corpus: {location})", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not a child process: a supervisor's SIGTERM reaches the server itself, so nothing is left running
    os.execve(sys.executable, cmd, env)
