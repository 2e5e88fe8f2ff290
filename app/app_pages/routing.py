"""Routing: which experts the router chose along one trajectory and across the replayed corpus."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from horizonlens.app import rollout_panel, state, ui
from horizonlens.figures import routing as rfig
from horizonlens.metrics import model_side, replays, routing, timeline


def _sample_note(df: pd.DataFrame) -> str:
    """What a token-tier statistic read, when it read a sample of the replayed corpus."""
    note = df.attrs.get("sample") or {}
    if not note.get("sampled"):
        return ""
    return (f" Read from {note['trajectories']:,} of {note['of_trajectories']:,} replayed trajectories "
            f"({note['tokens']:,} of {note['of_tokens']:,} tokens), a fixed sample.")


store = state.require_store()
st.title("Expert routing")
checkpoints = store.replay_checkpoints
if not checkpoints:
    st.info("Nothing has been replayed into this corpus yet. Open a trajectory and press **Replay this trajectory**, "
            "or run `horizonlens replay CORPUS --checkpoint DIR --limit 50` for a batch.")
    st.stop()
mine = state.current_checkpoint_id()
ckpt = st.selectbox("Checkpoint", checkpoints, index=checkpoints.index(mine) if mine in checkpoints else 0,
                    key="routing_ckpt")
replayed = state.cached(replays.replayed_trajectories, store, ckpt)
layers = state.cached(replays.moe_layers, store, ckpt)
E = state.cached(routing.num_experts, store, ckpt)
st.caption(f"{len(replayed):,} trajectories replayed · {rfig.layer_range(layers)} · {E} experts")
top_n = rfig.TOP_N
if E > rfig.TOP_N + 1:
    top_n = st.slider("Experts named per chart", 8, min(E, 64), rfig.TOP_N, step=4, key="routing_top_n",
                      help=f"Charts show the busiest (or most specialised) experts by name and fold the other "
                           f"{E - rfig.TOP_N} of {E} into one “other” entry.")

# Only the open tab runs: each tab reads different tables, and at 40 layers x 256 experts they are not free.
tab_traj, tab_corpus, tab_compare, tab_rollout = st.tabs(
    ["One trajectory", "Replayed corpus", "Two checkpoints", "Rollout vs replay"], key="routing_tab", on_change="rerun")
if tab_traj.open:
    with tab_traj:
        current = state.selected_trajectory()
        tid = st.selectbox("Trajectory", replayed, index=replayed.index(current) if current in replayed else 0,
                           key="routing_traj")
        layer = st.select_slider("Layer", layers, value=layers[-1], key="routing_layer") if len(layers) > 1 \
            else layers[0]
        failed = state.cached(timeline.failed_steps, store, tid)
        load = state.cached(routing.step_expert_load, store, ckpt, tid, layer)
        ui.chart(rfig.step_expert_heatmap(load, E, failed, layer, top_n),
                 "Each column is a step, each row an expert of this layer (busiest over the trajectory on top); shade "
                 "= its share of the step's token→expert assignments. Vertical bands = routing shifts; dotted lines "
                 "= failed checks.", key="routing_step_heatmap", data=load)
        signals = state.cached(model_side.signals_by_step, store, ckpt, tid)
        drift = state.cached(routing.routing_drift, store, ckpt, tid)
        ui.chart(rfig.step_signals(signals, failed, drift),
                 "Surprisal of the agent's action, router entropy, and drift of expert load from the trajectory's "
                 "first steps (Jensen–Shannon distance, mean over layers), per step.", key="routing_signals",
                 data=signals)
        if st.button("Open this trajectory step by step", key="routing_open"):
            state.open_trajectory(tid)

if tab_corpus.open:
    with tab_corpus:
        layer_c = st.select_slider("Layer", layers, value=layers[-1], key="routing_layer_corpus") \
            if len(layers) > 1 else layers[0]
        seg = state.cached(routing.expert_load, store, ckpt, "segment")
        ui.chart(rfig.specialization(seg, layer_c, "segment", top_n),
                 "Expert load per segment type ÷ uniform 1/E: red experts are preferred for that kind of token "
                 "(reasoning, tool call, observation, ...), blue avoided. Experts are grouped by the segment they "
                 "prefer.", key="routing_by_segment", data=seg)
        dom = state.cached(routing.expert_load, store, ckpt, "domain")
        ui.chart(rfig.specialization(dom, layer_c, "domain", top_n),
                 "The same by task domain: domain-specialised experts stand out in red.", key="routing_by_domain",
                 data=dom)
        left, right = st.columns(2)
        with left:
            co = state.cached(routing.coactivation, store, ckpt, layer_c)
            ui.chart(rfig.coactivation_matrix(co, E, layer_c, top_n),
                     "Row i, column j: how often expert j is also in a token's top-k when expert i is. Experts "
                     "are ordered so that frequent partners sit together." + _sample_note(co), key="routing_coact",
                     data=co)
        with right:
            usage = state.cached(routing.layer_usage, store, ckpt)
            ui.chart(rfig.layer_usage(usage), "Entropy of expert usage per layer (1 = perfectly balanced) and "
                     "max/mean load; collapse shows as low entropy and high imbalance.", key="routing_usage",
                     data=usage)
        consec = state.cached(routing.consecutive_same_expert, store, ckpt)
        st.dataframe(consec, hide_index=True)
        st.caption("Consecutive tokens routed to the same top-1 expert, against the random baseline Σ share² "
                   "(Mixtral §5); `any_overlap` = consecutive top-k sets share an expert." + _sample_note(consec))
        around = state.cached(model_side.around_failures, store, ckpt)
        if not around.empty:
            st.dataframe(around, hide_index=True)
            st.caption("Surprisal and router entropy k agent steps before/after failed and passed checks.")

if tab_compare.open:
    with tab_compare:
        others = [c for c in checkpoints if c != ckpt]
        if not others:
            st.info("Replay the same trajectories with a second checkpoint to compare their routing token by token.")
        else:
            other = st.selectbox("Compare with", others, key="routing_other")
            shared = state.cached(replays.shared_trajectories, store, ckpt, other)
            if not shared:
                st.info("The two checkpoints have no replayed trajectory in common.")
            else:
                tid2 = st.selectbox("Trajectory", shared, key="routing_cmp_traj")
                agree = state.cached(routing.checkpoint_agreement, store, ckpt, other, tid2)
                ui.chart(rfig.agreement(agree, ckpt, other), "|E_A ∩ E_B| / k per layer on the same tokens, and "
                         "how often the top-1 expert is the same (needs the same tokenizer).", key="routing_agree",
                         data=agree)

if tab_rollout.open:
    with tab_rollout:
        rollout_panel.render(store, ckpt)
