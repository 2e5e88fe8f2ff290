"""Compare: two trajectories side by side, aligned by step; or two run sets on their common tasks.

Each tab is a fragment: editing an id, a toggle or a run set reruns that tab only, and the hidden tab does no
work. The tab is in the URL (`?cmp_tab=Run+sets`).
"""

from __future__ import annotations

import streamlit as st

from horizonlens.app import runsets_panel, state, ui
from horizonlens.metrics import compare
from horizonlens.query import CorpusStore

store = state.require_store()
runsets_panel.apply_open_pair()  # a flipped task picked in the Run sets tab: its pair, before any widget
st.title("Compare trajectories")
current = state.selected_trajectory()


@st.fragment
def comparison() -> None:
    """Two ids (B defaults to another trial of A's task), where their actions diverge, and the aligned steps."""
    info = state.cached(CorpusStore.trajectory, store, current) if current else None
    trials = state.cached(CorpusStore.trials_of, store, info["task_id"]) if info and info["task_id"] else []
    c = st.columns(2)
    a = c[0].text_input("Trajectory A", value=current or "", key="cmp_a")
    pair = st.session_state.get("cmp_pair")  # a flipped task's best pair, opened from the Run sets tab
    default_b = pair[1] if pair and pair[0] == current else next((t for t in trials if t != a), "")
    b = c[1].text_input("Trajectory B", value=default_b, key="cmp_b",
                        help="Defaults to another trial of the same task as A.")
    if not a or not b:
        st.info("Enter two trajectory ids (open one on the Explore page first to prefill A and B).")
        return
    ta, tb = state.cached(CorpusStore.trajectory, store, a), state.cached(CorpusStore.trajectory, store, b)
    # the trials named are those of A as typed now, not of the trajectory the page was opened with
    a_task = ta["task_id"] if ta else None
    a_trials = state.cached(CorpusStore.trials_of, store, a_task) if a_task else []
    if a_trials:
        st.caption(f"Trials of A's task {ui.md(a_task)}: " + ", ".join(ui.md(t) for t in a_trials))
    for name, t, tid in (("A", ta, a), ("B", tb, b)):
        if t is None:
            st.error(f"Trajectory {name} ({ui.md(repr(tid))}) is not in this corpus.")
    if ta is None or tb is None:
        return
    if ta["task_id"] != tb["task_id"] or ta["task_id"] is None:
        tasks = f"{ui.md(ta['task_id'] or 'none')} and {ui.md(tb['task_id'] or 'none')}"
        st.warning(f"A and B are not runs of the same task ({tasks}): their steps are set side by side by index "
                   "only, so a divergence may just be the task's. Two trials of one task compare like with like.",
                   icon=":material/warning:")
    m = st.columns(2)
    for col, t in zip(m, (ta, tb), strict=True):
        col.markdown(f"**{ui.md(t['trajectory_id'])}** · {ui.md(t['outcome'])} · {t['n_steps']} steps · "
                     f"{t['n_failed_checks']} failed checks · agent {ui.md(t['agent'])}")
    table, first = state.cached(compare.align, store, a, b)
    if first is None:
        st.success("The two runs take the same actions at every step.")
    else:
        st.warning(f"The actions first diverge at step {first}.")
        if st.button(f"Open A at step {first}", key="cmp_open", icon=":material/open_in_new:"):
            state.open_trajectory(a, first)
    toggles = st.columns(2)
    only_diff = toggles[0].toggle("Only steps where the actions differ", value=False, key="cmp_only_diff")
    from_divergence = toggles[1].toggle("Start at the first divergence", key="cmp_from_divergence",
                                        disabled=first is None, help="Hide the steps before the one where the "
                                                                     "actions first differ (one step of context).")
    shown = table[~table["same_action"]] if only_diff else table
    if from_divergence and first is not None:
        shown = shown[shown["step"] >= max(0, first - 1)]
    st.dataframe(shown, hide_index=True, height=520, key="cmp_table",
                 column_config={"action_a": st.column_config.TextColumn(width="large"),
                                "action_b": st.column_config.TextColumn(width="large")})
    st.caption("Actions are tool calls with canonicalised JSON arguments (or the message when there is no call). "
               "Checks: ticked = passed, empty box = failed, blank = no check. Routing of two checkpoints on one "
               "trajectory is on the Routing page, tab “Two checkpoints”.")


ui.lazy_tabs({runsets_panel.TWO_TRAJECTORIES: comparison,
              runsets_panel.RUN_SETS: lambda: runsets_panel.run_sets(store)}, key="cmp_tab", bind="query-params")
