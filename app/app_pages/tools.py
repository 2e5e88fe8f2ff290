"""Tools: how agents use their tools — errors, repeated calls, loops and overuse — by agent, teacher and domain."""

from __future__ import annotations

import streamlit as st

from horizonlens.app import state, ui
from horizonlens.figures import insight as ifig
from horizonlens.metrics import tool_use
from horizonlens.query import CorpusStore, TrajectoryFilter

store = state.require_store()
st.title("Tool use")
c = st.columns(2)
domains = c[0].multiselect("Only domains", state.cached(CorpusStore.distinct, store, "domain"), key="tools_domains")
agents = c[1].multiselect("Only agents", state.cached(CorpusStore.distinct, store, "agent"), key="tools_agents")
found = state.cached(tool_use.tool_use, store, TrajectoryFilter(domains=domains, agents=agents))
s = found["summary"]
m = st.columns(5)
m[0].metric("tool calls", f"{s['calls']:,}", help=f"in {s['runs']:,} runs")
m[1].metric("repeated calls", f"{s['repeated_calls']:,}", help="Same tool and arguments as the run's previous call.")
m[2].metric("runs with repeats", f"{s['runs_with_repeats']:,}")
m[3].metric("runs with loops", f"{s['runs_with_loops']:,}",
            help="Runs whose calls hold a cycle of 2–4 calls with identical arguments, repeated back to back "
                 "(A, B, A, B).")
m[4].metric("runs with overuse", f"{s['runs_with_overuse']:,}",
            help=f"Runs with more calls than the median successful run of the same task ({s['overuse_calls']:,.0f} "
                 f"calls beyond it in all; {s['runs'] - s['runs_with_reference']:,} runs have no successful run of "
                 f"their task to compare with).")
ui.chart(ifig.tool_rates(found["tools"]), "Per tool, busiest first. Failed: the step's check failed or the tool "
         "answered with an error. Repeated: the call equals the run's previous call. In a loop: inside A,B,A,B. "
         "Overuse: calls beyond the median of the task's successful runs.", key="tools_rates", data=found["tools"])
facet = st.segmented_control("Group by", list(tool_use.GROUPS), default="agent", key="tools_facet") or "agent"
ui.chart(ifig.tool_groups(found[f"by_{facet}"], facet), f"Left: mean tool calls per run by {facet}. Right: share of "
         "runs with at least one repeated call, with a loop, and with more calls than the task's successful runs.",
         key="tools_groups", data=found[f"by_{facet}"])
ui.chart(ifig.tool_horizon(found["horizon"]), "Each point is a tenth of the runs' steps (0% = start). Rising lines: "
         "tool use degrades along the horizon — the compounding signature in the agent's own actions.",
         key="tools_horizon", data=found["horizon"])
st.subheader("Runs with the most repeats, loops and overuse")
runs = found["runs"].sort_values(["loop_calls", "repeated", "overuse"], ascending=False).head(50)
runs = runs.reset_index(drop=True)
runs = runs.assign(open=[state.link("trajectory", trajectory=str(t)) for t in runs["trajectory_id"]])
picked = st.dataframe(runs[["trajectory_id", "agent", "domain", "outcome", "calls", "failed", "repeated", "loop_calls",
                            "reference_calls", "overuse", "open"]], hide_index=True, key="tools_runs",
                      on_select="rerun", selection_mode="single-row",
                      column_config={"open": st.column_config.LinkColumn("open", display_text="open run"),
                                     "reference_calls": st.column_config.NumberColumn(
                                         "median of successful runs",
                                         help="Calls of the task's median successful run.")})
st.caption("Select a row to open the run step by step (the link opens it in a new tab).")
if picked and picked.selection.rows:
    state.open_trajectory(str(runs.iloc[picked.selection.rows[0]]["trajectory_id"]))
