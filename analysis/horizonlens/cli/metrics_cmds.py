"""`horizonlens metrics`: the corpus-level figures, as tables or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from horizonlens.cli.base import app, fail, json_records


@app.command()
def metrics(corpus: Annotated[str, typer.Argument(help="Corpus directory or s3://bucket/prefix.")],
            by: Annotated[Optional[str], typer.Option(help="Facet: domain, agent, teacher, source or "
                                                           "label_category.")] = None,
            k: Annotated[int, typer.Option(min=1, max=1000, help="Early warning: predict a failed check within the "
                                                                 "next k steps.")] = 3,
            checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint whose cached replays to include.")
                                  ] = None,
            all_replays: Annotated[bool, typer.Option("--all-replays", help="Model statistics over every replayed "
                                                                             "run, even when a random sample is "
                                                                             "recorded (default: the sample).")
                                   ] = False,
            as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False) -> None:
    """Corpus-level error-compounding figures (and model-side ones, early warning included, with --checkpoint)."""
    from horizonlens.corpus.files import CorpusError
    from horizonlens.metrics import attribution, compounding
    from horizonlens.query.store import open_store

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
    from horizonlens.metrics import tool_use

    tools = tool_use.tool_use(store)
    tables["tool_use_tools"] = tools["tools"]
    rollout_routing = None
    scope = None
    if ckpt_id and ckpt_id in store.replay_checkpoints:
        from horizonlens.metrics import early_warning, model_side, replay_set, rollout, routing_probe

        scope = replay_set.replay_scope(store, ckpt_id, use_sample=not all_replays)
        tables["model_by_step"] = model_side.signals_by_step(store, ckpt_id, bucket=10)
        tables["model_around_failures"] = model_side.around_failures(store, ckpt_id)
        tables["early_warning"] = early_warning.early_warning(store, ckpt_id, k=k, trajectory_ids=scope.trajectory_ids)
        tables["routing_probe"] = routing_probe.kept_probe(store, ckpt_id, scope.trajectory_ids, k=k)
        if rollout.has_comparison(store, ckpt_id):
            rollout_routing = rollout.summary(store, ckpt_id)
    elif ckpt_id:
        typer.secho(f"note: no cached replays for {ckpt_id} in this corpus (run `horizonlens replay`)", err=True)
    if as_json:
        out: dict[str, object] = {name: json_records(df) for name, df in tables.items() if name != "tool_use_tools"}
        out["tool_use"] = {**tools["summary"], "tools": json_records(tools["tools"]),
                           **{f"by_{g}": json_records(tools[f"by_{g}"]) for g in tool_use.GROUPS},
                           "horizon": json_records(tools["horizon"])}
        if scope is not None:
            out["replayed_set"] = {"runs": scope.runs, "replayed": scope.replayed, "random": scope.random,
                                   "how": scope.how}
        if rollout_routing is not None:
            out["rollout_routing"] = rollout_routing
        typer.echo(json.dumps(out, indent=1, default=str))
        return
    titles = {"step_error_rate": "Step error rate p̂ (95% Wilson) and independent-errors horizons",
              "survival": "Kaplan–Meier survival to the first failed check (first 15 t)",
              "self_conditioning": "Self-conditioning: P(fail | j earlier failures)",
              "previous_step": "P(fail | previous check)", "recovery": "Recovery after a failed check",
              "success_vs_length": "Success vs horizon length (logistic on log2 steps)",
              "pass_k": "pass^k", "attribution": "Decisive-step attribution accuracy",
              "model_by_step": "Model signals by step (buckets of 10)",
              "model_around_failures": "Model signals around checks",
              "early_warning": f"Early warning: AUROC for a failed check within the next {k} steps (95% CI over "
                               "trajectories)",
              "tool_use_tools": "Tool use per tool (repeats: same call as the run's previous; loops: A,B,A,B)",
              "routing_probe": f"Routing probe: grouped 5-fold logistic regression vs majority class (k={k})"}
    s = tools["summary"]
    typer.secho("\nTool use", bold=True)
    typer.echo(f"{s['calls']:,} calls in {s['runs']:,} runs; {s['repeated_calls']:,} repeated calls in "
               f"{s['runs_with_repeats']:,} runs; {s['runs_with_loops']:,} runs with loops; {s['overuse_calls']:,.0f} "
               f"calls beyond the median of the task's successful runs")
    if scope is not None:
        typer.echo(f"\nModel statistics use: {scope.how}")
    for name, df in tables.items():
        typer.secho(f"\n{titles[name]}", bold=True)
        shown = df.groupby("group").head(15) if name == "survival" and not df.empty else df
        typer.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}") if not df.empty else "(no data)")
    if rollout_routing is not None:
        _print_rollout(rollout_routing)


def _print_rollout(r: dict[str, Any]) -> None:
    """The rollout-vs-replay summary as a few lines and a per-layer table."""
    import pandas as pd

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{v:.2%}"

    typer.secho("\nRollout vs replay routing (docs/routing.md)", bold=True)
    ratio = (r["around_failures"] or {}).get("ratio")
    typer.echo(f"{r['tokens_compared']:,} tokens of {r['trajectories']} trajectories compared; "
               f"{pct(r['token_any_layer_mismatch'])} differ in >= 1 layer, {pct(r['set_mismatch'])} of (token, layer) "
               f"decisions differ, {pct(r['near_tie_share'])} of those at near-ties "
               f"(margin < {r['near_tie_threshold']:g}); tokens before failed checks differ "
               f"{'—' if ratio is None else f'{ratio:.2f}x'} as often as elsewhere")
    typer.echo(pd.DataFrame(r["per_layer"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
