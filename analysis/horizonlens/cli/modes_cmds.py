"""`horizonlens modes`: the failure modes of a corpus's failed steps, as a table or JSON."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from horizonlens.cli.base import app


@app.command()
def modes(corpus: Annotated[str, typer.Argument(help="Corpus directory or s3://bucket/prefix.")],
          where: Annotated[Optional[str], typer.Option(help="SQL predicate over the failed step `s` and its "
                                                            "trajectory `t`, e.g. \"t.domain = 'search'\" (read-only, "
                                                            "checked like the SQL console).")] = None,
          fit_sample: Annotated[int, typer.Option(min=100, help="Failed steps the clustering is fitted on (the "
                                                               "rest are assigned to the nearest mode).")] = 5_000,
          seed: Annotated[int, typer.Option(help="Random seed of the fitting sample.")] = 0,
          label: Annotated[Optional[int], typer.Option(help="Save this mode (its number, as in the table) as labels "
                                                           "of category `mode` on its steps.")] = None,
          as_json: Annotated[bool, typer.Option("--json", help="Print JSON: {\"modes\": [{label, size, members: "
                                                               "[[trajectory_id, step], ...]}, ...]}.")] = False
          ) -> None:
    """Cluster the failed steps into failure modes (model-free; computed once per corpus state and kept)."""
    from horizonlens.metrics.modes import ModeConfig, find_modes, save_mode_labels
    from horizonlens.query.store import open_store

    store = open_store(corpus)  # a HorizonLensError ends as one red line (base.py)
    result = find_modes(store, where, ModeConfig(fit_sample=fit_sample, seed=seed))
    if label is not None:
        added, present = save_mode_labels(store.root, result, label)
        typer.echo(f"saved {added} labels of category `mode` ({present} were already there)", err=True)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=1, default=str))
        return
    note = result.note
    if result.modes.empty:
        typer.echo("no failed steps in this selection")
        return
    fitted = (f"fitted on a sample of {note['fitted_steps']:,}, every step assigned" if note.get("sampled")
              else "fitted on all of them")
    typer.echo(f"{note['failed_steps']:,} failed steps ({note['distinct_texts']:,} distinct texts), {fitted}; "
               f"{len(result.modes) - int((result.modes['mode'] < 0).any())} modes")
    shown = result.modes[["mode", "label", "size", "share", "median_position", "next_check_passed", "run_succeeded"]]
    typer.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
