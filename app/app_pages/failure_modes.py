"""Failure modes: the failed steps clustered by what they say, where each mode occurs, and examples to open."""

from __future__ import annotations

from urllib.parse import quote

import streamlit as st

from horizonlens.app import auth, state, ui
from horizonlens.errors import HorizonLensError
from horizonlens.figures import insight as ifig
from horizonlens.metrics import modes as mmodes
from horizonlens.storage.access import Permission

store = state.require_store()
st.title("Failure modes")
where = st.text_input("Only failed steps where (SQL over the step `s` and its trajectory `t`)", key="modes_where",
                      placeholder="t.domain = 'search' AND t.agent LIKE 'dense%'",
                      help="Read-only and bounded, like the SQL console. Empty: every failed step.")
try:
    result = state.cached(mmodes.find_modes, store, where or None, members=False)
except HorizonLensError as exc:
    ui.show_error(exc)
    st.stop()
note = result.note
if result.modes.empty:
    st.info("This selection has no failed steps (no step whose check failed), so there is nothing to cluster.")
    st.stop()
n_modes = int((result.modes["mode"] >= 0).sum())
fit = (f"fitted on a random sample of {note['fitted_steps']:,} of them (seed {note['config']['seed']}), then every "
       f"step assigned to its nearest mode" if note.get("sampled") else "fitted on all of them")
st.caption(f"{note['failed_steps']:,} failed steps ({note['distinct_texts']:,} distinct texts once numbers, ids and "
           f"quoted values are masked), {fit}: {n_modes} modes, {int(note.get('unclustered') or 0):,} steps too far "
           f"from every mode (unclustered). Computed once per corpus state and kept in the corpus.")
table = result.modes.assign(open=[f"trajectory?trajectory={quote(str(t))}&step={int(s)}" for t, s in
                                  zip(result.modes["example_trajectory"], result.modes["example_step"], strict=True)])
st.dataframe(table[["label", "size", "share", "median_position", "next_check_passed", "run_succeeded", "error_label",
                    "example", "open"]], hide_index=True, key="modes_table", column_config={
    "size": st.column_config.NumberColumn("failed steps", format="localized"),
    # the bar in the cell is the modes' size chart: no Plotly on the first paint (a chart costs about one
    # Streamlit floor by itself here, bench/RESULTS.md); the charts are in the tabs below
    "share": st.column_config.ProgressColumn("share of failed steps", format="percent", min_value=0.0,
                                             max_value=float(result.modes["share"].max() or 1.0),
                                             help="The bar is drawn to the largest mode's share."),
    "median_position": st.column_config.NumberColumn("median position", format="%.2f",
                                                     help="Step ÷ run length: 0 = the start, 1 = the end."),
    "next_check_passed": st.column_config.NumberColumn("next check passed", format="%.2f"),
    "run_succeeded": st.column_config.NumberColumn("run succeeded", format="%.2f",
                                                   help="How often the run still succeeded: it recovered."),
    "error_label": st.column_config.TextColumn("most common error label"),
    "open": st.column_config.LinkColumn("example", display_text="open step")})
st.caption("Each row is a mode, largest first: failed steps that call the same tools the same way and get the same "
           "kind of answer. Its label lists the words that set it apart from the other modes; sort by any column.")
labels = dict(zip(result.modes["mode"], result.modes["label"], strict=True))


def mode_examples() -> None:
    """The most typical steps of one mode, each opening the step; the mode saved as labels."""
    # options are shown as plain text (never markdown), so a label needs no escaping there
    chosen = st.selectbox("Mode", list(labels), format_func=lambda m: str(labels[m])[:120], key="modes_chosen",
                          persist_state="page")  # kept while another tab is open
    examples = result.examples[result.examples["mode"] == chosen].reset_index(drop=True)
    links = [state.link("trajectory", trajectory=str(t), step=str(int(s)))
             for t, s in zip(examples["trajectory_id"], examples["step"], strict=True)]
    picked = st.dataframe(examples.assign(open=links)[["trajectory_id", "step", "agent", "domain", "tools", "text",
                                                       "open"]],
                          hide_index=True, key="modes_examples", on_select="rerun", selection_mode="single-row",
                          column_config={"open": st.column_config.LinkColumn("open", display_text="open step")})
    st.caption("The most typical steps of the mode (closest to its centre), as normalised text. Select a row to "
               "read that step whole on the Trajectory page (the link opens it in a new tab).")
    if picked and picked.selection.rows:
        row = examples.iloc[picked.selection.rows[0]]
        state.open_trajectory(str(row["trajectory_id"]), int(row["step"]))
    if chosen != mmodes.UNCLUSTERED and auth.can(Permission.LABEL) and st.button(
            "Save this mode as labels", key="modes_save",
            help="Every step of the mode gets a label of category `mode`, so it appears in Explore's label filter, "
                 "facets and attribution."):
        try:
            found = mmodes.find_modes(store, where or None)
            added, present = mmodes.save_mode_labels(store.root, found, int(chosen))
            st.success(f"Saved {added:,} labels ({present:,} were already there).")
        except HorizonLensError as exc:
            ui.show_error(exc)


def occurrences() -> None:
    """Each mode's share by agent, teacher or domain, and where along the horizon its steps sit."""
    facet = st.segmented_control("Share by", list(mmodes.FACETS), default="domain", key="modes_facet",
                                 persist_state="page") or "domain"
    left, right = st.columns(2)
    with left:
        ui.chart(ifig.mode_facets(result.facets, result.modes, facet), f"Share of each mode's steps by {facet}; "
                 "hover gives the lift (the share ÷ that value's share of all failed steps).", key="modes_facets",
                 data=result.facets)
    with right:
        ui.chart(ifig.mode_positions(result.positions, result.modes), "Where in the run each mode's steps sit: "
                 "early modes (left) derail runs from the start, late ones (right) hit long runs.",
                 key="modes_positions", data=result.positions)


def routing_signature() -> None:
    """The replayed failed steps of each mode split by routing group."""
    checkpoints = store.replay_checkpoints
    if not checkpoints:
        st.info("Replay trajectories through a checkpoint (Trajectory page, or `horizonlens replay`) to split the "
                "modes by the routing of their failed steps.")
    else:
        ckpt = st.selectbox("Checkpoint", checkpoints, key="modes_ckpt", persist_state="page")
        split = state.cached(mmodes.routing_split, store, ckpt, where or None)
        if split.empty:
            st.info("None of these failed steps has been replayed through this checkpoint.")
        else:
            rank = {m: i for i, m in enumerate(labels)}  # the modes' own order: largest first
            ordered = split.sort_values("mode", key=lambda col: col.map(rank))
            shown = ordered.assign(mode=ordered["mode"].map(labels))
            st.dataframe(shown, hide_index=True, key="modes_split")
            st.caption("Replayed failed steps of each mode by routing group: the groups are k-means clusters of the "
                       "steps' expert-usage signatures (per layer, the share of assignments per expert). A mode "
                       "spread over groups fails under different routing; one group means one routing pattern.")


# Only the open tab runs and draws (the table above is the page's answer; these are the ways into it)
ui.lazy_tabs({"Examples": mode_examples, "Where they occur": occurrences, "Routing signature": routing_signature},
             key="modes_tab")
