"""The model column of the Trajectory page: replay on demand, then per-step routing and surprisal."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from horizonlens.app import rollout_panel, state, ui
from horizonlens.corpus import CorpusStore
from horizonlens.figures import routing as rfig
from horizonlens.metrics import replays, routing
from horizonlens.metrics.replays import step_tokens
from horizonlens.model import ReplayCache

MAX_TOKENS_SHOWN = 64


def render(store: CorpusStore, tid: str, step: int, failed_steps: list[int]) -> None:
    path = state.checkpoint_path()
    ckpt_id = state.checkpoint_id_of(path)
    if ckpt_id is None:
        st.warning(f"The checkpoint path `{path}` is not a usable checkpoint (config.json, *.safetensors and a "
                   "tokenizer). Fix it in the sidebar.")
        return
    st.markdown(f"### Model · `{ckpt_id}`")
    replay = state.cached(replays.replay_steps, store, ckpt_id, tid)
    if replay.empty:
        _offer_replay(store, tid, ckpt_id)
        return
    notes = ReplayCache(store.root, ckpt_id).read_notes(tid)
    if notes.get("notes"):
        st.warning(notes["notes"])
    row = replay[replay["step"] == step]
    if row.empty or row["n_tokens"].iloc[0] == 0:
        st.caption("This step has no tokens in the replay.")
        return
    r = row.iloc[0]
    c = st.columns(3)
    c[0].metric("Surprisal (nats)", f"{r['surprisal']:.2f}" if r["surprisal"] == r["surprisal"] else "—",
                help="Mean −ln p of the agent-written tokens of this step under the checkpoint.")
    c[1].metric("Top-1 agreement", f"{r['top1_agreement']:.0%}" if r["top1_agreement"] == r["top1_agreement"] else "—",
                help="Share of the agent's tokens the model ranked first.")
    c[2].metric("Router entropy", f"{r['entropy']:.2f}" if r["entropy"] == r["entropy"] else "—",
                help="Mean entropy of the full router distribution over this step's tokens and layers (nats).")
    rollout_panel.step_metrics(store, ckpt_id, tid, step)
    step_rows = state.cached(replays.step_routing, store, ckpt_id, tid, step)
    n_experts = state.cached(routing.num_experts, store, ckpt_id)
    ui.chart(rfig.layer_expert_heatmap(step_rows, n_experts, f"Experts chosen in step {step}"),
             "Share of this step's token→expert assignments per layer; uniform would be 1/E everywhere.",
             key="traj_layer_expert")
    _would_do(store, tid, step)


def render_tokens(store: CorpusStore, tid: str, step: int) -> None:
    """Token × layer view of one step's routing, full width below the step (token text must be readable)."""
    path = state.checkpoint_path()
    ckpt_id = state.checkpoint_id_of(path) if path else None
    if not ckpt_id or ckpt_id not in store.replay_checkpoints:
        return
    step_rows = state.cached(replays.step_routing, store, ckpt_id, tid, step)
    if step_rows.empty:
        return
    n_experts = state.cached(routing.num_experts, store, ckpt_id)
    tokens = step_tokens(step_rows, state.get_tokenizer(str(Path(path).resolve())))
    st.markdown(f"#### Tokens of step {step} and their experts")
    if len(tokens) > MAX_TOKENS_SHOWN:
        start = st.slider(f"Token window ({len(tokens):,} tokens in this step)", 0, len(tokens) - MAX_TOKENS_SHOWN, 0,
                          step=MAX_TOKENS_SHOWN // 2, key=f"tok_win_{tid}_{step}")
        tokens = tokens.iloc[start:start + MAX_TOKENS_SHOWN]
    shown = step_rows[step_rows["token_index"].isin(tokens["token_index"])]
    ui.chart(rfig.token_expert_view(tokens, shown, n_experts),
             "Each column is a token of this step (its text on the axis), each row a MoE layer; colour = the top-1 "
             "expert. Hover for the router's top-k experts, their weights and the router entropy.",
             key="traj_token_expert", data=shown.merge(tokens[["token_index", "text"]], on="token_index"))


def _offer_replay(store: CorpusStore, tid: str, ckpt_id: str) -> None:
    info = state.cached(CorpusStore.trajectory, store, tid)
    st.info(f"This trajectory has not been replayed through `{ckpt_id}` yet (about {info['n_tokens']:,} tokens). "
            "Replay it to see routing and surprisal per step.")
    if st.button("▶ Replay this trajectory", key=f"replay_{tid}", type="primary"):
        loaded = state.get_model()
        if loaded is None:
            return
        from horizonlens.model.batch import ensure_replayed

        bar = st.progress(0.0, text="Replaying…")
        ensure_replayed(store, loaded, tid, progress=lambda done, total: bar.progress(
            done / max(1, total), text=f"Replaying… {done:,}/{total:,} tokens"))
        state.clear_query_cache()
        st.rerun()


def _would_do(store: CorpusStore, tid: str, step: int) -> None:
    row = state.cached(CorpusStore.steps, store, tid, step, step + 1).to_pylist()[0]
    if row["source"] != "agent":
        return
    with st.expander("What would the model do here?", expanded=False):
        c = st.columns(3)
        max_new = c[0].number_input("Max new tokens", 8, 512, 96, key="wwd_max")
        sample = c[1].toggle("Sample", value=False, key="wwd_sample")
        temp = c[2].number_input("Temperature", 0.05, 2.0, 0.7, key="wwd_temp", disabled=not sample)
        key = f"wwd_{tid}_{step}"
        if st.button("Generate", key=f"{key}_go"):
            loaded = state.get_model()
            if loaded is None:
                return
            from horizonlens.model.replay import continue_from

            steps = state.cached(CorpusStore.steps, store, tid, 0, step + 1).to_pylist()
            with st.spinner("Generating…"):
                st.session_state[key] = continue_from(loaded, steps, step, max_new_tokens=int(max_new),
                                                      do_sample=sample, temperature=float(temp))
        result = st.session_state.get(key)
        if result is not None:
            a, b = st.columns(2)
            with a:
                st.markdown("**Model**")
                st.code(result.generated or "(nothing)", language=None, wrap_lines=True)
            with b:
                st.markdown("**Recorded agent**")
                st.code(result.recorded, language=None, wrap_lines=True)
            cut = " (prefix cut to the context)" if result.prefix_truncated else ""
            st.caption(f"From {result.prompt_tokens:,} prompt tokens{cut}; {result.settings}.")
