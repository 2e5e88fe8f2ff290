"""`horizonlens metrics`: the corpus-level figures, as tables or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from horizonlens.cli.base import app, fail, json_records


@app.command()
def metrics(corpus: Annotated[str, typer.Argument(help="Corpus directory or s3://bucket/prefix.")],
            by: Annotated[Optional[str], typer.Option(help="Facet: domain, agent, teacher or source.")] = None,
            checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint whose cached replays to include.")
                                  ] = None,
            as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False) -> None:
    """Corpus-level error-compounding figures (and model-side ones with --checkpoint)."""
    from horizonlens.corpus.io import CorpusError
    from horizonlens.corpus.store import open_store
    from horizonlens.metrics import attribution, compounding

    if by is not None and by not in compounding.FACETS:
        fail(f"--by must be one of {', '.join(compounding.FACETS)}")
    try:
        store = open_store(corpus)
    except CorpusError as exc:
        fail(str(exc))
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
        typer.echo(json.dumps({name: json_records(df) for name, df in tables.items()}, indent=1, default=str))
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
