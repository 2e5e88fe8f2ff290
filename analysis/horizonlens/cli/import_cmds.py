"""`horizonlens import` and `horizonlens index`: agent logs into a corpus, and its derived data brought up to date."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from horizonlens.cli.base import app, fail


@app.command("import")
def import_cmd(paths: Annotated[Optional[list[Path]], typer.Argument(help="Files or directories to import.")] = None,
               into: Annotated[str, typer.Option("--into", help="Corpus directory or s3://bucket/prefix (created "
                                                                 "if missing).")] = "",
               fmt: Annotated[str, typer.Option("--format", help="auto, or one of: atif, who-and-when, openhands, "
                                                                 "mini-swe-agent, inspect, swe-agent, chat-dataset, "
                                                                 "sharegpt, openai-chat.")] = "auto",
               replace: Annotated[bool, typer.Option(help="Update trajectories that are already in the corpus.")
                                  ] = False,
               strict: Annotated[bool, typer.Option(help="Import nothing if any record is malformed.")] = False,
               agent: Annotated[Optional[str], typer.Option(
                   help="The agent (model or policy) of every imported run whose record names none; it also goes "
                        "into the run's id, so two models' runs of the same task both stay.")] = None,
               watch: Annotated[Optional[Path], typer.Option(
                   help="Follow this folder until stopped (Ctrl-C): new files, and lines appended to .jsonl "
                        "files, are imported as they appear.")] = None,
               ) -> None:
    """Convert agent logs into a corpus.

    Formats: tau-bench, SWE-agent, mini-swe-agent, ATIF, Who&When, Inspect AI, OpenHands, OpenAI chat, chat datasets
    (Hugging Face Parquet or JSONL with messages/tools), ShareGPT.
    A run whose id is already in the corpus with different content is reported as a conflict and not imported.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from horizonlens.corpus.files import CorpusError
    from horizonlens.ingest import ImportFailed, import_paths

    if not into:
        fail("give the corpus to import into with --into CORPUS")
    if watch is not None:
        if paths:
            fail("give either PATHS or --watch DIR, not both")
        _watch(watch, into, fmt)
        return
    if not paths:
        fail("give the files or folders to import (or --watch DIR)")
    progress = Progress(SpinnerColumn(), TextColumn("importing: {task.completed:,} records"), TimeElapsedColumn(),
                        disable=not sys.stderr.isatty(), transient=True)
    task = progress.add_task("import", total=None)
    try:
        with progress:
            report = import_paths(paths, into, fmt=fmt, replace=replace, strict=strict, agent=agent,
                                  progress=lambda n: progress.advance(task, n))
    except (ImportFailed, CorpusError) as exc:
        fail(str(exc))
    for notice in report.notices[:50]:
        typer.secho(f"cut: {notice}", fg=typer.colors.CYAN, err=True)
    for problem in report.problems[:50]:
        typer.secho(f"skipped: {problem}", fg=typer.colors.YELLOW, err=True)
    if len(report.problems) > 50:
        typer.secho(f"... and {len(report.problems) - 50} more problems", fg=typer.colors.YELLOW, err=True)
    for conflict in report.conflicts[:50]:
        typer.secho(f"conflict: {conflict}", fg=typer.colors.MAGENTA, err=True)
    if len(report.conflicts) > 50:
        typer.secho(f"... and {len(report.conflicts) - 50} more conflicts", fg=typer.colors.MAGENTA, err=True)
    typer.echo(report.summary())


def _watch(folder: Path, into: str, fmt: str) -> None:
    """Follow `folder` into `into` until SIGINT or SIGTERM; one line per poll that changed the corpus."""
    import signal
    import threading

    from horizonlens.ingest.watch import FolderWatcher

    if not folder.is_dir():
        fail(f"{folder}: not a folder")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(f"watching {folder} into {into} (Ctrl-C to stop)", err=True)
    FolderWatcher(folder, into, fmt=fmt, log=lambda line: typer.echo(line, err=True)).run(stop)


@app.command()
def index(corpus: Annotated[str, typer.Argument(help="Corpus directory or s3://bucket/prefix.")],
          full: Annotated[bool, typer.Option(help="Recompute the aggregates from scratch instead of updating them."
                                             )] = False,
          results: Annotated[bool, typer.Option(help="Also compute and keep what the Failure modes and Routing pages "
                                                     "would compute on their first load: the failure modes of every "
                                                     "failed step, and each replayed checkpoint's routing probe.")
                             ] = False) -> None:
    """Build the search index and the corpus aggregates (imports keep them up to date; run after hand edits)."""
    from horizonlens.corpus.files import CorpusError, read_manifest
    from horizonlens.derived.build import build_all

    try:
        read_manifest(corpus)
        built = build_all(corpus, full=full)
    except CorpusError as exc:
        fail(str(exc))
    if built["index"].get("replaced"):
        typer.echo(f"index: rebuilt from nothing, replacing {built['index']['replaced']}")
    for name in ("index", "aggregates"):
        rows = ", ".join(f"{n:,} {table}" for table, n in built[name]["rows"].items())
        typer.echo(f"{name}: {rows} rows; {sum(built[name]['computed'].values())} source file(s) read in "
                   f"{built[name]['seconds']:.1f}s")
    if results:
        _keep_results(corpus)


def _keep_results(corpus: str) -> None:
    """The failure modes of every failed step and each checkpoint's routing probe, computed now and kept."""
    import time

    from horizonlens.metrics.modes import find_modes
    from horizonlens.metrics.replay_set import replay_scope
    from horizonlens.metrics.routing_probe import kept_probe, probe_message
    from horizonlens.query.store import open_store

    store = open_store(corpus)
    started = time.perf_counter()
    found = find_modes(store)
    typer.echo(f"modes: {int((found.modes['mode'] >= 0).sum()) if not found.modes.empty else 0} modes of "
               f"{found.note['failed_steps']:,} failed steps in {time.perf_counter() - started:.1f}s")
    for checkpoint in store.replay_checkpoints:
        ids = replay_scope(store, checkpoint).trajectory_ids  # the runs the Routing page probes by default
        if probe_message(store, checkpoint, ids) is None:
            started = time.perf_counter()
            rows = len(kept_probe(store, checkpoint, ids))
            typer.echo(f"routing probe of {checkpoint}: {rows} rows in {time.perf_counter() - started:.1f}s")
