"""Trajectory: one run step by step, its error timeline, and what the checkpoint did at each step."""

from __future__ import annotations

import streamlit as st

from horizonlens.app import annotations_panel, auth, model_panel, params, run_details, state, ui
from horizonlens.export.bundle import bundle_file_name, bundle_html
from horizonlens.figures import formatting as fmt
from horizonlens.figures import routing as rfig
from horizonlens.metrics import timeline as timelines
from horizonlens.query import CorpusStore
from horizonlens.storage.access import Permission

store = state.require_store()
st.title("Trajectory")


def chosen_trajectory() -> str:
    """The trajectory to show (URL, session or typed); without one, offer a few and stop the page."""
    tid = state.selected_trajectory()
    with st.container():
        typed = st.text_input("Trajectory id", value=tid or "", key="traj_id_input",
                              help="Or select a row on the Explore page. The URL carries trajectory and step, so a "
                                   "view can be shared and reloaded.")
        if typed and typed != tid:
            state.open_trajectory(typed.strip())
    if not tid:
        st.info("Pick a trajectory on the **Explore** page, or paste its id above.")
        first = state.cached(CorpusStore.list_trajectories, store, sort="n_failed_checks", descending=True, limit=5)
        for t in first.rows["trajectory_id"].to_pylist():
            if st.button(f"Open {ui.md(t)}", key=f"traj_suggest_{t}"):
                state.open_trajectory(t)
        st.stop()
    return tid


tid = chosen_trajectory()

info = state.cached(CorpusStore.trajectory, store, tid)
if info is None:
    st.error(f"No trajectory with id {ui.md(repr(tid))} in this corpus.")
    st.stop()

timeline = state.cached(timelines.error_timeline, store, tid)
summary = timelines.timeline_summary(timeline)
n_steps = len(timeline)

# --- current step: URL first (deep link), then session ----------------------------------------
step = params.step_param(n_steps)
if step is None:
    step = st.session_state.get("traj_step")
if step is None:
    step = summary["first_failed_step"] if summary["first_failed_step"] is not None else 0
step = max(0, min(int(step), n_steps - 1))
st.session_state["traj_step"] = step
st.query_params["trajectory"] = tid
st.query_params["step"] = str(step)
SLIDER = f"traj_slider_{tid}"
st.session_state[SLIDER] = step  # a deep link or a return to the page moves the slider too


def go_to(new_step: int) -> None:
    """Move to a step (widget callbacks call this before the step panel reruns)."""
    new_step = max(0, min(int(new_step), n_steps - 1))
    st.session_state["traj_step"] = new_step
    st.session_state[SLIDER] = new_step
    st.query_params["trajectory"] = tid
    st.query_params["step"] = str(new_step)


def _strip_clicked() -> None:
    event = st.session_state.get("traj_strip")
    points = event.selection.points if event and event.selection else []
    if points:
        go_to(int(points[0]["x"]))


# --- header ------------------------------------------------------------------------------------
badge = {"success": ":green-badge[:material/check_circle: success]", "failure": ":red-badge[:material/cancel: failure]"
         }.get(info["outcome"], f":gray-badge[{ui.md(info['outcome'])}]")
st.markdown(f"#### {badge} · {ui.md(info['domain'])} · agent {ui.md(info['agent'] or '—')} · "
            f"teacher {ui.md(info['teacher'] or '—')}")
ui.untrusted("Task", info["task"], key="traj_task")
if auth.can(Permission.EXPORT):  # a bundle takes the run out of the server: an editor's action there
    bundle_note = st.columns([5, 1.6])
    bundle_note[0].caption("Send this run to someone without a server: one HTML file with the steps, timeline, "
                           "labels and routing views; secrets are redacted and it loads nothing from the network.")
    ckpt_path = state.checkpoint_path()
    bundle_ckpt = ckpt_path if ckpt_path and state.checkpoint_id_of(ckpt_path) else None
    bundle_note[1].download_button("Offline bundle",
                                   lambda: bundle_html(store, tid, bundle_ckpt)[0].encode("utf-8"),
                                   file_name=bundle_file_name(tid), mime="text/html", key="traj_bundle",
                                   on_click="ignore", icon=":material/description:")
m = st.columns(7)
m[0].metric("Steps", fmt.count(n_steps))
m[1].metric("Tokens", fmt.count(info["n_tokens"]))
m[2].metric("Checks", summary["checks"])
m[3].metric("Failed checks", summary["failed"])
m[4].metric("Recovered", summary["recovered"])
m[5].metric("Reward", fmt.number(info["reward"]))
m[6].metric("Decisive step", fmt.count(summary["decisive_step"]))
failed_steps = state.cached(timelines.failed_steps, store, tid)
run_details.render(store, info, go_to)


@st.fragment
def step_panel() -> None:
    """Everything that changes with the step. A fragment: Next/Prev rerun only this, not the page above."""
    step = int(st.session_state["traj_step"])
    ui.chart(rfig.timeline_strip(timeline, step),
             "Each bar is a step: green = check passed, red = failed, grey = no check; ◆ = annotated decisive "
             "error. Click a bar to jump to it.", key="traj_strip", data=timeline, on_select=_strip_clicked,
             selection_mode="points")
    _navigation(step)
    row = state.cached(CorpusStore.steps, store, tid, step, step + 1).to_pylist()[0]
    left, right = st.columns([3, 2]) if state.checkpoint_path() else (st.container(), None)
    with left:
        _step_body(row, step)
    if right is not None:
        with right:
            picked = model_panel.render(store, tid, step)
        model_panel.render_tokens(store, tid, step, picked)
    annotations_panel.render(store, tid, step, n_steps)


def _navigation(step: int) -> None:
    nav = st.columns([1, 1, 1.3, 1.3, 4])
    nav[0].button("◀ Prev", disabled=step == 0, key="traj_prev", on_click=go_to, args=(step - 1,))
    nav[1].button("Next ▶", disabled=step >= n_steps - 1, key="traj_next", on_click=go_to, args=(step + 1,))
    nav[2].button("First failed check", disabled=not failed_steps, key="traj_first_fail", on_click=go_to,
                  args=(failed_steps[0] if failed_steps else 0,))
    later = [s for s in failed_steps if s > step]
    nav[3].button("Next failed check", disabled=not later, key="traj_next_fail", on_click=go_to,
                  args=(later[0] if later else step,))
    with nav[4]:
        find = st.text_input("Find in this trajectory", key="traj_find", placeholder="text to find",
                             label_visibility="collapsed")
    if find:
        hits = state.cached(CorpusStore.find_in_trajectory, store, tid, find)
        if hits:
            st.selectbox(f"{len(hits)} steps contain “{ui.md(find)}”", hits, key="traj_find_hits",
                         index=hits.index(step) if step in hits else 0)
            st.button("Go to match", key="traj_find_go",
                      on_click=lambda: go_to(int(st.session_state["traj_find_hits"])))
        else:
            st.caption(f"No step contains “{ui.md(find)}”.")
    if n_steps > 1:
        st.slider("Step", 0, n_steps - 1, key=SLIDER, on_change=lambda: go_to(st.session_state[SLIDER]))


def _step_body(row: dict, step: int) -> None:
    check = row["check_passed"]
    status = (":green[:material/check_circle: check passed]" if check is True
              else ":red[:material/cancel: check failed]" if check is False else "— no check")
    decisive = " · ◆ decisive error" if row.get("is_decisive_error") else ""
    st.markdown(f"### Step {step} · {ui.md(row['source'])} · {status}{decisive}")
    if row.get("check_detail") or row.get("error_label"):
        st.caption(f"{ui.md(row.get('error_label') or '')} "
                   f"{('— ' + ui.md(row['check_detail'])) if row.get('check_detail') else ''}"
                   f" (label: {ui.md(row.get('label_source') or 'n/a')})")
    ui.untrusted("Knowledge", row.get("knowledge"), key=f"k_{step}")
    ui.untrusted("Reasoning", row.get("reasoning"), key=f"r_{step}")
    ui.untrusted("Message", row.get("message"), key=f"m_{step}")
    for i, call in enumerate(row.get("tool_calls") or []):
        args, lang = ui.pretty_arguments(call.get("arguments"))
        ui.untrusted(f"Tool call · {call.get('name')}", args or "(no arguments)", key=f"c_{step}_{i}", language=lang)
    for i, obs in enumerate(row.get("observations") or []):
        ui.untrusted("Observation", obs.get("content") or "(empty)", key=f"o_{step}_{i}")
    st.caption(f"{fmt.count(row.get('n_tokens') or 0)} tokens · {fmt.seconds(row.get('duration_s'))} · "
               f"{fmt.usd(row.get('cost_usd'))}")


step_panel()
