"""`horizonlens diff`: two run sets compared on their common tasks, as tables, JSON or an HTML report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from horizonlens.cli.base import app, fail

FLIPPED_SHOWN = 30  # flipped tasks listed in the table output (all of them are in --json and --html)


def _finite(value: Any) -> Any:
    """The summary with NaN and infinities as null (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return _finite(value.item())
    return value


@app.command()
def diff(corpus: Annotated[str, typer.Argument(help="Corpus directory or s3://bucket/prefix.")],
         a: Annotated[str, typer.Option("--a", help="Run set A: a SQL predicate over the columns of trajectories "
                                                    "(and labels), e.g. \"agent = 'gpt-4o'\".")],
         b: Annotated[str, typer.Option("--b", help="Run set B: a predicate like --a.")],
         by: Annotated[Optional[str], typer.Option(help="Repeat the statistics per domain, teacher, agent, source "
                                                        "or horizon (bins of task length), Holm-adjusted.")] = None,
         k: Annotated[Optional[int], typer.Option(min=1, max=100, help="pass^k up to this k (default: the trials "
                                                                       "both sides have, at most 8).")] = None,
         boot: Annotated[int, typer.Option(min=0, max=100_000, help="Bootstrap resamples of tasks for the "
                                                                   "intervals.")] = 2000,
         seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
         as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
         html: Annotated[Optional[Path], typer.Option("--html", help="Also write a self-contained HTML report "
                                                                     "(grid, statistics, flipped tasks).")] = None,
         pairs: Annotated[bool, typer.Option("--pairs/--no-pairs", help="Find each flipped task's best pair by "
                                             "where its runs part (reads their steps: at 10^6 runs most of the "
                                             "time). --no-pairs lists the lowest trials' pair, without a step.")
                          ] = True,
         ) -> None:
    """Compare two run sets on the tasks both ran: paired pass rates, McNemar, pass^k, log-rank, flipped tasks."""
    from horizonlens.metrics.runsets import FACETS, compare
    from horizonlens.query.runsets import RunSet
    from horizonlens.query.store import open_store

    if by is not None and by not in FACETS:
        fail(f"--by must be one of {', '.join(FACETS)}")
    store = open_store(corpus)
    result = compare(store, RunSet.of_predicate(a), RunSet.of_predicate(b), by=by, k=k, n_boot=boot, seed=seed,
                     divergence=pairs)
    summary = _finite(result.summary)
    if html is not None:
        from horizonlens.figures.runset_report import report_html

        try:
            html.write_text(report_html(summary, result.tasks, result.km()), encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {html}: {exc.strerror or exc}")
        typer.secho(f"wrote {html}", err=True)
    if as_json:
        typer.echo(json.dumps(summary, indent=1, ensure_ascii=False))
        return
    _print(summary)


def _print(summary: dict[str, Any]) -> None:
    """The statistics, the facet table and the first flipped tasks as plain tables."""
    import pandas as pd

    from horizonlens.figures.runsets import facet_rows, stat_rows

    typer.secho(f"A: {summary['a']['name']}\nB: {summary['b']['name']}", bold=True)
    if summary.get("note"):
        typer.secho(f"note: {summary['note']}", fg=typer.colors.YELLOW)
    typer.echo(stat_rows(summary).drop(columns=["reading"]).to_string(index=False))
    if summary.get("by"):
        typer.secho(f"\nBy {summary['by'][0]['facet']} (p-values Holm-adjusted)", bold=True)
        typer.echo(facet_rows(summary["by"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    flips = summary["flipped"]
    typer.secho(f"\n{len(flips)} flipped task(s)" + (f", the first {FLIPPED_SHOWN}" if len(flips) > FLIPPED_SHOWN
                                                     else ""), bold=True)
    if flips:
        cols = ["task_id", "winner", "a_successes", "a_trials", "b_successes", "b_trials", "first_divergence_step"]
        table = pd.DataFrame(flips[:FLIPPED_SHOWN])[cols].astype({"first_divergence_step": "Int64"})
        typer.echo(table.to_string(index=False))
