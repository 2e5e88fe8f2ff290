"""The model column of the Trajectory page: replay on demand, then per-step routing and surprisal."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from horizonlens.app import auth, rollout_panel, state, ui, would_do_panel
from horizonlens.figures import formatting as fmt
from horizonlens.figures import routing as rfig
from horizonlens.metrics import expert_rank, replays, routing
from horizonlens.metrics.replays import step_tokens
from horizonlens.query import CorpusStore
from horizonlens.storage.access import Permission

BUSIEST_NAMED = 5  # (layer, expert) pairs named in words under the step's routing chart


def render(store: CorpusStore, tid: str, step: int) -> int | None:
    """The model column for one step: its replay signals and which experts it used; returns the picked expert."""
    ckpt_id = state.current_checkpoint_id()
    if ckpt_id is None:
        st.warning(f"The checkpoint path {ui.md(state.checkpoint_path())} is not a usable checkpoint (config.json, "
                   "\\*.safetensors and a tokenizer). Fix it in the sidebar.")
        return None
    st.markdown(f"### Model · {ui.md(ckpt_id)}")
    replay = state.cached(replays.replay_steps, store, ckpt_id, tid)
    if replay.empty:
        _offer_replay(store, tid, ckpt_id)
        return None
    notes = state.cached(replays.replay_notes, store, ckpt_id, tid)
    if notes.get("notes"):
        st.warning(ui.md(notes["notes"]))
    row = replay[replay["step"] == step]
    if row.empty or row["n_tokens"].iloc[0] == 0:
        st.caption("This step has no tokens in the replay.")
        return None
    r = row.iloc[0]
    c = st.columns(3)
    c[0].metric("Surprisal (nats)", fmt.number(r["surprisal"]),
                help="Mean −ln p of the agent-written tokens of this step under the checkpoint.")
    c[1].metric("Top-1 agreement", fmt.share(r["top1_agreement"]),
                help="Share of the agent's tokens the model ranked first.")
    c[2].metric("Router entropy", fmt.number(r["entropy"]),
                help="Mean entropy of the full router distribution over this step's tokens and layers (nats).")
    rollout_panel.step_metrics(store, ckpt_id, tid, step)
    load = state.cached(routing.step_layer_load, store, ckpt_id, tid, step)  # the step tier: never token rows
    n_experts = state.cached(routing.num_experts, store, ckpt_id)
    picked = _pick_expert(state.cached(routing.step_expert_shares, store, ckpt_id, tid, step), tid)
    layers = rfig.layer_range(load["layer"].unique().tolist())
    ui.chart(rfig.step_experts(load, step, n_experts, highlight=picked),
             f"Per layer ({layers}): the experts this step's tokens were sent to "
             "most, by rank (the number is the expert id; shade: its share of the layer's assignments). “other”: "
             "what the remaining experts took together.", key="traj_layer_expert", data=load)
    top = expert_rank.busiest(load, BUSIEST_NAMED)
    st.markdown("Busiest experts in this step: " + ", ".join(
        f"**E{e} in L{layer}** ({fmt.share(share)})"
        for layer, e, share in zip(top["layer"], top["expert"], top["share"], strict=True)))
    _would_do(store, tid, step)
    return picked


def _pick_expert(shares: pd.DataFrame, tid: str) -> int | None:
    """An expert to follow through the layers (and from step to step), offered busiest in this step first."""
    label = {int(e): f"E{e} · {fmt.share(s, 1)} of the step's assignments"
             for e, s in zip(shares["expert"], shares["share"], strict=True)}
    choice = st.selectbox("Follow one expert across layers", [None, *label], key=f"traj_expert_{tid}",
                          format_func=lambda e: "none (show each cell's top-1 expert)" if e is None else label[e],
                          help="Outlines the expert in the chart above and shades the tokens it received below. "
                               "Expert ids are per layer: E17 of layer 3 and E17 of layer 10 are different "
                               "networks that share a number.")
    return None if choice is None else int(choice)


def render_tokens(store: CorpusStore, tid: str, step: int, highlight: int | None = None) -> None:
    """Token x layer view of one step's routing, full width below the step (token text must be readable).

    Only a window of tokens is drawn (a step of a 45k-token trajectory can hold thousands): as many as fit
    with their expert ids printed (`figures.routing.token_window`).
    """
    ckpt_id = state.current_checkpoint_id()
    if not ckpt_id:
        return
    replay = state.cached(replays.replay_steps, store, ckpt_id, tid)
    row = replay[replay["step"] == step] if not replay.empty else replay
    if row.empty or int(row["n_tokens"].iloc[0]) == 0:
        return
    st.markdown(f"#### Tokens of step {step} and their experts")
    # Off until asked for (then it stays on while paging): token-level routing is the heaviest read and chart.
    if not st.toggle(f"Show this step's {int(row['n_tokens'].iloc[0]):,} tokens layer by layer",
                     key="traj_show_tokens", help="Reads the step's token-level routing and draws one window of "
                                                  "tokens at a time."):
        return
    if not state.cached(replays.has_token_routing, store, ckpt_id, tid):
        st.caption("This replay kept no token-level routing (it was replayed with `--routing steps`).")
        return
    n_experts = state.cached(routing.num_experts, store, ckpt_id)
    n_tokens = int(row["n_tokens"].iloc[0])
    size = rfig.token_window(n_experts)
    start = 0
    if n_tokens > size:
        start = st.slider(f"Token window ({n_tokens:,} tokens in this step)", 0, n_tokens - size, 0,
                          step=size // 2, key=f"tok_win_{tid}_{step}")
    shown = state.cached(replays.step_token_window, store, ckpt_id, tid, step, start, size)
    if shown.empty:
        return
    tokens = step_tokens(shown, state.get_tokenizer(str(Path(state.checkpoint_path()).resolve())))
    surprisal = state.cached(replays.step_token_surprisal, store, ckpt_id, tid, step)
    ui.chart(rfig.token_expert_view(tokens, shown, n_experts, highlight, surprisal),
             f"Each column is a token of this step (its text and position on the axis; {rfig.VISIBLE_TOKENS} in "
             "view, drag sideways for the rest of the window), each row a MoE layer. Top row: the model's surprisal "
             "at the token (−ln p, nats; hover: whether it was the model's own first choice). Without a followed "
             "expert a cell shows the token's top-1 expert and is shaded by its gate weight; with one, the cells "
             "where that expert is in the top-k are shaded by its weight. Hover for the router's top-k experts, "
             "their weights and the router entropy.",
             key="traj_token_expert", data=token_data(tokens, shown, surprisal))
    if surprisal.empty:
        _offer_surprisal(store, tid)


def token_data(tokens: pd.DataFrame, routing: pd.DataFrame, surprisal: pd.DataFrame) -> pd.DataFrame:
    """The token view's data for its CSV: routing rows with each token's text and surprisal."""
    rows = routing.merge(tokens[["token_index", "text"]], on="token_index")
    return rows.merge(surprisal, on="token_index", how="left") if not surprisal.empty else rows


def _offer_surprisal(store: CorpusStore, tid: str) -> None:
    """A replay stored before per-token surprisal was kept: say so, and offer to replay it again."""
    c = st.columns([5, 1.6])
    c[0].caption("This replay was stored without per-token surprisal (only the per-step means above). Replaying it "
                 "again adds the surprisal row.")
    if c[1].button("Replay again", key=f"replay_again_{tid}", icon=":material/refresh:"):
        loaded = state.get_model()
        if loaded is None:
            return
        from horizonlens.model.batch import ensure_replayed

        with st.spinner("Replaying…"):
            ensure_replayed(store, loaded, tid, force=True)
        state.clear_query_cache()
        st.rerun()


def _offer_replay(store: CorpusStore, tid: str, ckpt_id: str) -> None:
    info = state.cached(CorpusStore.trajectory, store, tid) or {}
    tokens = state.replay_token_count(store, tid)
    size = (f"{tokens:,} tokens as this checkpoint's tokenizer renders it" if tokens is not None else
            f"about {fmt.count(info.get('n_tokens'))} tokens by the corpus's estimate")
    st.info(f"This trajectory has not been replayed through {ui.md(ckpt_id)} yet ({size}). "
            "Replay it to see routing and surprisal per step.")
    if not auth.can(Permission.REPLAY):
        st.caption("Replaying needs an editor's account on this server.")
        return
    if st.button("▶ Replay this trajectory", key=f"replay_{tid}", type="primary"):
        loaded = state.get_model()
        if loaded is None:
            return
        from horizonlens.model.batch import ensure_replayed

        bar = st.progress(0.0, text="Replaying…")

        def progress(done: int, total: int) -> None:
            bar.progress(done / max(1, total), text=f"Replaying… {done:,}/{total:,} tokens")

        ensure_replayed(store, loaded, tid, progress=progress)
        state.clear_query_cache()
        st.rerun()


def _would_do(store: CorpusStore, tid: str, step: int) -> None:
    row = state.cached(CorpusStore.steps, store, tid, step, step + 1).to_pylist()[0]
    if row["source"] != "agent":
        return
    box = st.expander("What would the model do here?", expanded=False, key="wwd_open", on_change="rerun")
    with box:
        if not box.open:  # its widgets and any generated answer are sent only once it is opened
            return
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
            would_do_panel.show(result, key)
            cut = " (prefix cut to the context)" if result.prefix_truncated else ""
            st.caption(f"From {result.prompt_tokens:,} prompt tokens{cut}; {result.settings}.")
