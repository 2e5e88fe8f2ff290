"""Corpus commands: generate the sample, import logs, build the word index, run read-only SQL."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from horizonlens.cli.base import app, fail, progress_bar


@app.command()
def sample(out: Annotated[Path, typer.Argument(help="Directory to write the corpus to.")],
           trajectories: Annotated[int, typer.Option(help="Number of trajectories.")] = 1200,
           seed: Annotated[int, typer.Option(help="Random seed; the same seed gives identical files.")] = 0,
           trials: Annotated[int, typer.Option(help="Trials per task (for pass^k).")] = 4,
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


@app.command()
def sql(corpus: Annotated[str, typer.Argument(help="Corpus directory or s3://bucket/prefix.")],
        query: Annotated[str, typer.Argument(help="One read-only SELECT over the views trajectories, steps, "
                                                  "replay_steps, routing.")],
        row_cap: Annotated[int, typer.Option(help="At most this many rows.")] = 1000,
        timeout: Annotated[float, typer.Option(help="Stop the query after this many seconds.")] = 30.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print rows as JSON lines.")] = False) -> None:
    """Run a read-only SQL query over a corpus."""
    from horizonlens.corpus.files import CorpusError
    from horizonlens.query.console import SqlError, run_sql
    from horizonlens.query.store import open_store

    try:
        store = open_store(corpus)
        result = run_sql(store, query, row_cap=row_cap, timeout_s=timeout)
    except (CorpusError, SqlError) as exc:
        fail(str(exc))
    if as_json:
        for row in result.table.to_pylist():
            typer.echo(json.dumps(row, default=str, ensure_ascii=False))
    else:
        typer.echo(result.table.to_pandas().to_string(index=False, max_colwidth=60))
    for note in result.notes:  # rows stopped by a cap, cells cut to fit
        typer.secho(f"({note})", err=True)


@app.command("import")
def import_cmd(paths: Annotated[list[Path], typer.Argument(help="Files or directories to import.")],
               into: Annotated[str, typer.Option("--into", help="Corpus directory or s3://bucket/prefix (created "
                                                                 "if missing).")],
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

    from horizonlens.corpus.files import CorpusError
    from horizonlens.ingest import ImportFailed, import_paths

    progress = Progress(SpinnerColumn(), TextColumn("importing: {task.completed:,} records"), TimeElapsedColumn(),
                        disable=not sys.stderr.isatty(), transient=True)
    task = progress.add_task("import", total=None)
    try:
        with progress:
            report = import_paths(paths, into, fmt=fmt, replace=replace, strict=strict,
                                  progress=lambda n: progress.advance(task, n))
    except (ImportFailed, CorpusError) as exc:
        fail(str(exc))
    for notice in report.notices[:50]:
        typer.secho(f"cut: {notice}", fg=typer.colors.CYAN, err=True)
    for problem in report.problems[:50]:
        typer.secho(f"skipped: {problem}", fg=typer.colors.YELLOW, err=True)
    if len(report.problems) > 50:
        typer.secho(f"... and {len(report.problems) - 50} more problems", fg=typer.colors.YELLOW, err=True)
    typer.echo(report.summary())


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
