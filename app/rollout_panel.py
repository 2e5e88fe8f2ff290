"""Rollout vs replay: the Routing page's tab, and the per-step figure beside surprisal on the Trajectory page.

Everything here reads the per-step comparison tables (`rollout_compare*`), except the token strip,
which reads the token rows of one step; so it stays fast at 40 layers x 256 experts and 45k tokens.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from horizonlens.app import state, ui
from horizonlens.figures import rollout as rofig
from horizonlens.figures.formatting import MISSING, share
from horizonlens.metrics import rollout, timeline
from horizonlens.query import CorpusStore

MAX_TOKENS_SHOWN = 64  # tokens in the strip at a time: the token text on the axis must stay readable


def render(store: CorpusStore, ckpt: str) -> None:
    """The "Rollout vs replay" tab for one checkpoint."""
    compared = state.cached(rollout.compared_trajectories, store, ckpt)
    if not compared:
        st.info("No rollout routing has been compared with this checkpoint's replays. Save the experts your "
                "inference engine chose (vLLM `enable_return_routed_experts=True`, SGLang "
                "`--enable-return-routed-experts`) and run `horizonlens routing import FILE... --into CORPUS "
                "--checkpoint DIR` (docs/routing.md).")
        return
    head = state.cached(rollout.summary, store, ckpt)
    m = st.columns(4)
    m[0].metric("Tokens compared", f"{head['tokens_compared']:,}", help=f"in {head['trajectories']} trajectories")
    m[1].metric("Tokens differing in ≥ 1 layer", share(head["token_any_layer_mismatch"], 1),
                help="Share of compared tokens whose top-k expert set differs between the rollout engine and "
                     "the replay in at least one MoE layer.")
    m[2].metric("(token, layer) cells differing", share(head["set_mismatch"], 2),
                help="Share of (token, MoE layer) decisions whose top-k sets differ.")
    m[3].metric("Differences at near-ties", share(head["near_tie_share"], 1),
                help=f"Share of differing (token, layer) cells where the replay router's k-th and (k+1)-th scores "
                     f"were within {head['near_tie_threshold']:g}: numerics alone can flip those.")
    layers = state.cached(rollout.layer_mismatch, store, ckpt)
    ui.chart(rofig.layer_mismatch_bars(layers),
             "Per MoE layer: share of tokens whose top-k set differs between rollout and replay (light: the replay "
             "had a near-tie there; dark: a clear margin), and how often the top-1 expert differs.",
             key="rollout_layers", data=layers)
    current = state.selected_trajectory()
    tid = st.selectbox("Trajectory", compared, index=compared.index(current) if current in compared else 0,
                       key="rollout_traj")
    failed = state.cached(timeline.failed_steps, store, tid)
    steps = state.cached(rollout.step_mismatch, store, ckpt, tid)
    ui.chart(rofig.mismatch_along_horizon(steps, failed),
             "Per step: share of its tokens routed differently in at least one layer (solid) and of its (token, "
             "layer) cells (dotted); red ticks mark failed checks.", key="rollout_horizon", data=steps)
    if not steps.empty:
        _strip(store, ckpt, tid, steps["step"].tolist(), failed)
    left, right = st.columns(2)
    with left:
        seg = state.cached(rollout.by_segment, store, ckpt)
        ui.chart(rofig.segment_mismatch_bars(seg), "Tokens routed differently, by what kind of text they are.",
                 key="rollout_segments", data=seg)
    with right:
        around = state.cached(rollout.around_failures, store, ckpt)
        st.markdown(f"**Before failed checks vs elsewhere** (the failed step and the {around['window']} before it)")
        st.dataframe([{"steps": name.replace("_", " "), "tokens": around[name]["tokens"],
                       "tokens differing": share(around[name]["token_any_layer_mismatch"], 1),
                       "cells differing": share(around[name]["set_mismatch"], 2)}
                      for name in ("before_failed", "elsewhere")], hide_index=True)
        if around["ratio"] is not None:
            st.caption(f"Tokens before failed checks differ {around['ratio']:.2f}× as often as elsewhere.")


def _strip(store: CorpusStore, ckpt: str, tid: str, steps: list[int], failed: list[int]) -> None:
    """One step's tokens × layers, mismatching cells marked."""
    default = next((s for s in failed if s in steps), steps[0])
    step = st.selectbox("Step", steps, index=steps.index(default), key=f"rollout_step_{tid}",
                        format_func=lambda s: f"{s} · failed check" if s in failed else str(s))
    rows = state.cached(rollout.step_token_comparison, store, ckpt, tid, int(step))
    tokens = rows.drop_duplicates("token_index")[["token_index", "token_id"]].reset_index(drop=True)
    tokens["text"] = _texts(ckpt, tokens["token_id"].tolist())
    if len(tokens) > MAX_TOKENS_SHOWN:
        start = st.slider(f"Token window ({len(tokens):,} compared tokens in this step)", 0,
                          len(tokens) - MAX_TOKENS_SHOWN, 0, step=MAX_TOKENS_SHOWN // 2,
                          key=f"rollout_win_{tid}_{step}")
        tokens = tokens.iloc[start:start + MAX_TOKENS_SHOWN]
    shown = rows[rows["token_index"].isin(tokens["token_index"])]
    ui.chart(rofig.token_strip(shown, tokens),
             "Each column is a token of this step, each row a MoE layer: grey = same experts, orange = different "
             "experts where the replay router had a near-tie, red = different experts with a clear margin.",
             key="rollout_strip", data=shown)


def _texts(ckpt: str, token_ids: list[int]) -> list[str]:
    """Token text with the sidebar checkpoint's tokenizer when it is this checkpoint, else the ids."""
    if state.current_checkpoint_id() == ckpt:
        tokenizer = state.get_tokenizer(str(Path(state.checkpoint_path()).resolve()))
        return [tokenizer.decode([t]) for t in token_ids]
    return [f"#{t}" for t in token_ids]


def step_metrics(store: CorpusStore, ckpt: str, tid: str, step: int) -> None:
    """The Trajectory page's rollout-vs-replay figures for one step, under surprisal and entropy.

    Nothing is shown when the trajectory's rollout was not compared with this checkpoint's replay.
    """
    if tid not in state.cached(rollout.compared_trajectories, store, ckpt):
        return
    steps = state.cached(rollout.step_mismatch, store, ckpt, tid)
    row = steps[steps["step"] == step]
    c = st.columns(3)
    c[0].metric("Rollout mismatch", share(row["token_any_layer_mismatch"].iloc[0], 1) if len(row) else MISSING,
                help="Share of this step's tokens whose experts differ between the rollout engine and the replay in "
                     "at least one MoE layer (Routing page, Rollout vs replay tab).")
    c[1].metric("Cells differing", share(row["set_mismatch"].iloc[0], 2) if len(row) else MISSING,
                help="Share of this step's (token, MoE layer) decisions whose top-k sets differ.")
    c[2].metric("At near-ties", share(row["near_tie_share"].iloc[0], 1) if len(row) else MISSING,
                help="Of those differing decisions, the share where the replay router's k-th and (k+1)-th scores "
                     "were nearly tied (numerics alone can flip them).")
