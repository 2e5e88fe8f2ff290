"""`horizonlens migrate`: upgrade what an older Horizon Lens wrote to the current format."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from horizonlens.cli.base import app


@app.command()
def migrate(corpus: Annotated[str, typer.Argument(help="Corpus directory or s3://bucket/prefix.")],
            as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False) -> None:
    """Upgrade what an older Horizon Lens wrote (manifests without a file list, format-1 replay caches)."""
    from horizonlens.replays.migrate import migrate as run

    report = run(corpus, log=lambda m: typer.echo(m, err=True))
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=1))
        return
    done = [what for what, did in (("recorded the corpus's file list", report.corpus_listed),
                                   ("recorded the labels' file list", report.annotations_listed)) if did]
    done += [f"{r.checkpoint_id}: {r.trajectories} trajectories upgraded ({r.converted} converted from routing "
             f"format 1)" for r in report.caches]
    typer.echo("\n".join(done) if done else f"{corpus}: already in the current format; nothing to do")
