"""Data leaving Horizon Lens: `horizonlens export` (training data) and `horizonlens bundle` (one run, offline HTML)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from horizonlens.cli.base import app, progress_bar

_REDACT_HELP = ("Also replace matches of this regular expression in every text (repeatable); API keys, bearer tokens "
                "and e-mail addresses are replaced unless --no-default-redactions.")


@app.command()
def export(corpus: Annotated[str, typer.Argument(help="Corpus directory or s3://bucket/prefix.")],
           out: Annotated[Path, typer.Argument(help="Folder to write (a new one, or a previous export to replace).")],
           fmt: Annotated[str, typer.Option("--format", help="openai-jsonl, sharegpt or hf-parquet.")
                          ] = "openai-jsonl",
           where: Annotated[Optional[str], typer.Option(help="A read-only SQL condition over the trajectories view, "
                                                             "e.g. \"teacher = 'swe-teacher' AND n_steps < 80\".")
                            ] = None,
           domain: Annotated[Optional[list[str]], typer.Option(help="Only these domains (repeatable).")] = None,
           agent: Annotated[Optional[list[str]], typer.Option(help="Only these agents (repeatable).")] = None,
           teacher: Annotated[Optional[list[str]], typer.Option(help="Only these teachers (repeatable).")] = None,
           source: Annotated[Optional[list[str]], typer.Option(help="Only these sources (repeatable).")] = None,
           outcome: Annotated[Optional[list[str]], typer.Option(help="Only these outcomes (repeatable).")] = None,
           min_steps: Annotated[Optional[int], typer.Option(help="At least this many steps.")] = None,
           max_steps: Annotated[Optional[int], typer.Option(help="At most this many steps.")] = None,
           failed_checks: Annotated[Optional[bool], typer.Option(
               "--failed-checks/--no-failed-checks", help="Only runs with (or without) a failed check.")] = None,
           tool: Annotated[Optional[str], typer.Option(help="Only runs where some step calls this tool.")] = None,
           text: Annotated[Optional[str], typer.Option(help="Only runs whose task or steps contain this text (as the "
                                                            "Explore search; see --text-mode).")] = None,
           text_mode: Annotated[str, typer.Option(help="auto, words (every word occurs) or exact (a literal substring)."
                                                  )] = "auto",
           label: Annotated[Optional[list[str]], typer.Option(help="Only runs carrying one of these labels "
                                                                   "(repeatable).")] = None,
           only_success: Annotated[bool, typer.Option(help="Only successful runs.")] = False,
           truncate_at: Annotated[str, typer.Option(help="none, first-failed-check or decisive: cut each run before "
                                                         "that step and keep the prefix.")] = "none",
           best_of_task: Annotated[bool, typer.Option(help="One run per task: the best by outcome, then reward, then "
                                                           "fewest steps.")] = False,
           dedupe: Annotated[bool, typer.Option(help="Drop a run whose exported conversation equals an earlier one.")
                             ] = False,
           max_tokens: Annotated[Optional[int], typer.Option(help="Runs longer than this under the checkpoint's chat "
                                                                  "template are dropped (or flagged); needs "
                                                                  "--checkpoint.")] = None,
           over_max_tokens: Annotated[str, typer.Option(help="drop or flag (keep, with over_max_tokens = true) runs "
                                                             "over --max-tokens.")] = "drop",
           checkpoint: Annotated[Optional[Path], typer.Option(help="Count tokens with this checkpoint's tokenizer and "
                                                                   "chat template (the n_tokens column).")] = None,
           redact: Annotated[Optional[list[str]], typer.Option(help=_REDACT_HELP)] = None,
           default_redactions: Annotated[bool, typer.Option(
               "--default-redactions/--no-default-redactions",
               help="Replace API keys, bearer tokens and e-mail addresses.")] = True,
           as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False) -> None:
    """Write selected runs as training data: OpenAI JSONL, ShareGPT or Hugging Face Parquet, with a manifest.

    Runs that cannot be exported are listed with the reason in OUT/problems.jsonl; the rest export.
    """
    from horizonlens.export import ExportOptions, export_runs
    from horizonlens.query.filters import TrajectoryFilter
    from horizonlens.query.store import open_store

    flt = TrajectoryFilter(domains=domain or [], agents=agent or [], teachers=teacher or [], sources=source or [],
                           outcomes=outcome or [], min_steps=min_steps, max_steps=max_steps,
                           has_failed_checks=failed_checks, tool=tool, text=text, text_mode=text_mode,
                           labels=label or [])
    options = ExportOptions(format=fmt, where=where, filter=flt, only_success=only_success, truncate_at=truncate_at,
                            best_of_task=best_of_task, dedupe=dedupe, max_tokens=max_tokens,
                            over_max_tokens=over_max_tokens, checkpoint=str(checkpoint) if checkpoint else None,
                            redact=redact or [], default_redactions=default_redactions)
    options.validate()
    store = open_store(corpus)
    bar, task = progress_bar(0, "exporting")
    with bar:
        def advance(done: int, total: int) -> None:
            bar.update(task, total=total, advance=done)

        report = export_runs(store, out, options, progress=advance)
    if as_json:
        typer.echo(json.dumps({"summary": report.summary(), "target": str(report.target), "runs": report.runs,
                               "selected": report.selected, "steps": report.steps, "truncated": report.truncated,
                               "flagged": report.flagged, "tokens": report.tokens, "dropped": dict(report.dropped),
                               "not_counted": report.not_counted, "files": report.files,
                               "seconds": round(report.seconds, 2)}, indent=1))
        return
    for problem in report.problems:
        typer.secho(f"{problem['action']}: {problem['trajectory_id']}: {problem['reason']} ({problem['detail']})",
                    fg=typer.colors.YELLOW, err=True)
    shown = len(report.problems)
    total = sum(report.dropped.values()) + report.not_counted
    if total > shown:
        typer.secho(f"... {total - shown} more in {report.target / 'problems.jsonl'}", fg=typer.colors.YELLOW,
                    err=True)
    typer.echo(report.summary())


@app.command()
def bundle(corpus: Annotated[str, typer.Argument(help="Corpus directory or s3://bucket/prefix.")],
           trajectory: Annotated[str, typer.Option("--trajectory", help="Id of the run to bundle.")],
           out: Annotated[Path, typer.Option("--out", help="The HTML file to write.")],
           checkpoint: Annotated[Optional[Path], typer.Option(help="Include the routing views of this checkpoint's "
                                                                   "cached replay (default: any checkpoint that "
                                                                   "replayed the run).")] = None,
           redact: Annotated[Optional[list[str]], typer.Option(help=_REDACT_HELP)] = None,
           default_redactions: Annotated[bool, typer.Option(
               "--default-redactions/--no-default-redactions",
               help="Replace API keys, bearer tokens and e-mail addresses.")] = True) -> None:
    """Write one run as a self-contained HTML file that opens from disk and loads nothing from the network."""
    from horizonlens.export.bundle import write_bundle
    from horizonlens.export.redact import Redactor
    from horizonlens.query.store import open_store

    redactor = Redactor(redact or [], defaults=default_redactions)
    store = open_store(corpus)
    written = write_bundle(store, trajectory, out, checkpoint=checkpoint, redactor=redactor)
    routing = f"routing of {written.replay_checkpoint}" if written.replay_checkpoint else "no routing (not replayed)"
    redacted = sum(written.redacted.values())
    typer.echo(f"wrote {written.path} ({written.bytes / 2**20:.1f} MB): {written.steps} steps, {written.labels} "
               f"labels, {routing}; {redacted} redaction(s)")
