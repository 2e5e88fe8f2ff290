"""`horizonlens annotate`: import label files, export labels, score attribution against labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from horizonlens.cli.base import app, json_records

annotate_app = typer.Typer(no_args_is_help=True, help="Labels on runs and steps: import label files, export, score "
                                                      "failure attribution against them (docs/annotations.md).")
app.add_typer(annotate_app, name="annotate")


@annotate_app.command("import")
def import_labels(paths: Annotated[list[Path], typer.Argument(help="Label files or directories.")],
                  into: Annotated[str, typer.Option("--into", help="Corpus directory (or s3://bucket/prefix) the runs "
                                                                   "were imported into.")],
                  fmt: Annotated[str, typer.Option("--format", help="who-and-when, agentrx or table.")],
                  source: Annotated[Optional[str], typer.Option(
                      help="Name the labels' source (default: the format; e.g. a judge's name for its predictions)."
                  )] = None,
                  author: Annotated[Optional[str], typer.Option(help="Author of the labels (default: the OS user).")
                                    ] = None,
                  strict: Annotated[bool, typer.Option(help="Store nothing if any id is unmatched or any record "
                                                            "malformed.")] = False) -> None:
    """Put the labels of a label file on the corpus steps they name, in one transaction."""
    from horizonlens.ingest.label_files import import_label_files

    report = import_label_files(paths, into, fmt, source=source, author=author, strict=strict)
    for line in report.unmatched[:50]:
        typer.secho(f"unmatched: {line}", fg=typer.colors.YELLOW, err=True)
    for line in report.problems[:50]:
        typer.secho(f"skipped: {line}", fg=typer.colors.YELLOW, err=True)
    hidden = max(0, len(report.unmatched) - 50) + max(0, len(report.problems) - 50)
    if hidden:
        typer.secho(f"... and {hidden} more", fg=typer.colors.YELLOW, err=True)
    typer.echo(report.summary())


@annotate_app.command("export")
def export(corpus: Annotated[str, typer.Argument(help="Corpus directory or s3://bucket/prefix.")],
           out: Annotated[Path, typer.Option("--out", help="File to write (.csv or .parquet).")],
           fmt: Annotated[Optional[str], typer.Option("--format", help="csv or parquet (default: from --out).")
                          ] = None,
           history: Annotated[bool, typer.Option(help="Every version, edits and deletions included, instead of the "
                                                      "current labels.")] = False) -> None:
    """Write a corpus's labels to CSV or Parquet."""
    from horizonlens.query.labels import export_labels
    from horizonlens.query.store import open_store

    store = open_store(corpus)
    try:
        n = export_labels(store, out, fmt, history=history)
    finally:
        store.close()
    typer.echo(f"wrote {n:,} {'label versions' if history else 'labels'} to {out}")


@annotate_app.command("score")
def score(corpus: Annotated[str, typer.Argument(help="Corpus directory or s3://bucket/prefix.")],
          truth: Annotated[str, typer.Option(help="'importer' (the decisive step an importer marked), or a label "
                                                  "category, optionally @source: decisive, root_cause@agentrx.")
                           ] = "importer",
          predict: Annotated[Optional[list[str]], typer.Option(
              help="Label sets to score as predictors (category or category@source); repeatable. The built-in "
                   "rules are always scored.")] = None,
          checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint whose replays give the "
                                                                  "highest-surprisal rule.")] = None,
          all_outcomes: Annotated[bool, typer.Option(help="Score successful runs too (default: only failed runs for "
                                                          "the importer's truth, every labelled run otherwise).")
                                  ] = False,
          as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Attribution accuracy (exact, ±1, ±2, ±5 steps; and the agent) of each predictor against the chosen truth."""
    from horizonlens.metrics.attribution import LabelSet, accuracy, predictions
    from horizonlens.query.store import open_store

    ckpt_id = None
    if checkpoint is not None:
        from horizonlens.model.loader import checkpoint_id

        ckpt_id = checkpoint_id(checkpoint)
    truth_set = None if truth == "importer" else LabelSet.parse(truth)
    store = open_store(corpus)
    try:
        predictors = [LabelSet.parse(p) for p in predict or []]
        preds = predictions(store, ckpt_id, truth=truth_set, label_predictors=predictors,
                            failed_only=False if all_outcomes else None)
    finally:
        store.close()
    table = accuracy(preds)
    if as_json:
        typer.echo(json.dumps({"truth": truth, "trajectories": len(preds), "accuracy": json_records(table)}, indent=1))
        return
    typer.secho(f"Attribution against {truth}: {len(preds)} trajectories", bold=True)
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.3f}") if not table.empty else "(no data)")
