"""The Compare page's "Run sets" tab: two selections of runs compared on their common tasks.

Widgets pick A and B (a facet value or a SQL predicate), one cached call computes the comparison, and the tab
shows the statistics with a reading guide each, then tabs: the task grid (which opens a flipped task's best pair in
the two-trajectory view), B − A along the horizon beside the survival of both on the same tasks, and pass^k.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from horizonlens.app import state, ui
from horizonlens.errors import HorizonLensError
from horizonlens.figures import runsets as rfig
from horizonlens.metrics import runsets as metrics
from horizonlens.query import CorpusStore
from horizonlens.query import labels as label_queries
from horizonlens.query.runsets import FACETS, RunSet
from horizonlens.storage.csv_cells import csv_bytes

PICK_FACET, PICK_PREDICATE = "facet value", "SQL predicate"
GRID_ROWS = 2_000  # tasks sent to the browser's grid; the rest are in its CSV
TWO_TRAJECTORIES, RUN_SETS = "Two trajectories", "Run sets"  # the Compare page's tabs
NO_FACET = "(none)"
TASKS, ALONG_THE_HORIZON, PASS_K = "Tasks", "Along the horizon and survival", "pass^k"  # the tab's own tabs


def _values(store: CorpusStore, facet: str) -> list[str]:
    if facet == "label":
        return state.cached(label_queries.label_values, store)
    return state.cached(CorpusStore.distinct, store, facet)


def _default_value(values: list[str], side: str) -> int:
    """A's default is the first value, B's the second: two different agents out of the box."""
    return min(len(values) - 1, 0 if side == "a" else 1) if values else 0


def pick(store: CorpusStore, side: str, column: Any) -> RunSet | None:
    """The widgets of one run set, in `column`; None when nothing usable is picked yet."""
    label = side.upper()
    # persisted: opening a flipped pair leaves this tab, and a user who comes back expects the same run sets
    how = column.radio(f"Run set {label} by", [PICK_FACET, PICK_PREDICATE], horizontal=True, key=f"rs_{side}_how",
                       persist_state="page")
    if how == PICK_PREDICATE:
        text = column.text_input(f"{label}: predicate over trajectories", key=f"rs_{side}_pred",
                                 placeholder="agent = 'gpt-4o' AND domain <> 'search'",
                                 help="One boolean SQL expression over the columns of trajectories; `labels` is "
                                      "the run's label names (list_contains(labels, 'reviewed')).",
                                 persist_state="page")
        return RunSet.of_predicate(text) if text.strip() else None
    inner = column.columns([1, 2])
    facet = inner[0].selectbox(f"{label}: facet", list(FACETS), key=f"rs_{side}_facet", persist_state="page")
    values = _values(store, facet)
    if not values:
        inner[1].caption(f"No {facet} values in this corpus.")
        return None
    value = inner[1].selectbox(f"{label}: {facet}", values, index=_default_value(values, side),
                               key=f"rs_{side}_value_{facet}", persist_state="page")
    return RunSet.of_facet(facet, value) if value is not None else None


def open_pair(flip: dict[str, Any]) -> None:
    """Ask the page to show a flipped task's best pair in the two-trajectory tab (see `apply_open_pair`)."""
    st.session_state["rs_open_pair"] = flip
    st.rerun(scope="app")


def apply_open_pair() -> None:
    """Before the page draws any widget: switch to the two-trajectory tab with the pair asked for, if any.

    Widget state (the tab, the A/B inputs, the grid's selection) can only be changed before its widget is
    drawn in a run, hence a request kept in the session and applied at the top of the next run.
    """
    flip = st.session_state.pop("rs_open_pair", None)
    if flip is None:
        return
    for key in ("cmp_a", "cmp_b", "rs_grid"):  # the inputs take the pair as defaults; the selection is used up
        st.session_state.pop(key, None)
    st.session_state["trajectory"] = flip["a_trajectory"]
    st.query_params["trajectory"] = flip["a_trajectory"]
    st.session_state["cmp_pair"] = (flip["a_trajectory"], flip["b_trajectory"])
    st.session_state["cmp_from_divergence"] = flip["first_divergence_step"] is not None
    st.session_state["cmp_tab"] = TWO_TRAJECTORIES


def _statistics(summary: dict[str, Any]) -> None:
    """The statistics as a static table whose reading guides wrap (cells escaped: a table renders markdown)."""
    rows = rfig.stat_rows(summary).rename(columns={"reading": "how to read it"})
    st.table(rows.map(ui.md).rename(columns=ui.md), hide_index=True)


def _grid(store: CorpusStore, result: metrics.Comparison) -> None:
    """The task × run-set grid; selecting a flipped task opens its best pair."""
    flips = {f["task_id"]: f for f in result.flipped}
    head = st.columns([3, 1])
    head[0].markdown(f"**Tasks** · {len(result.tasks):,} common, {len(flips):,} flipped "
                     f"({sum(f['winner'] == 'b' for f in flips.values())} to B, "
                     f"{sum(f['winner'] == 'a' for f in flips.values())} to A)")
    only = head[1].toggle("Flipped only", value=bool(flips), key="rs_flipped_only",
                          persist_state="page")  # kept while another tab is open
    grid = rfig.task_grid(result.tasks)
    if only:
        grid = grid[grid["flipped"] != ""]
    every = grid
    if len(grid) > GRID_ROWS:  # at 10^6 runs the whole grid was 1.1 MB sent to every first load
        grid = grid.assign(gap=grid["B − A"].abs()).sort_values(["gap", "task_id"], ascending=[False, True]).drop(
            columns="gap").head(GRID_ROWS).reset_index(drop=True)
    event = st.dataframe(grid, hide_index=True, on_select="rerun", selection_mode="single-row", key="rs_grid",
                         height=360, column_config={
                             "A rate": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
                             "B rate": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
                             "B − A": st.column_config.NumberColumn(format="percent"),
                             "steps": st.column_config.NumberColumn("median steps", format="%.0f")})
    st.caption("Successes/trials of each run set per task; sort by any column. A task is flipped when one run set "
               "succeeds in most of its trials and the other in fewer than half. Select a flipped task to open its "
               "best pair (a success and a failure that agree longest) at the step where they part.")
    if len(every) > len(grid):
        cut = st.columns([5, 1.4])
        cut[0].caption(f"Showing the {len(grid):,} of {len(every):,} tasks with the largest |B − A| (sorting a "
                       "column sorts these); the CSV has all of them.")
        cut[1].download_button("CSV, every task", lambda: csv_bytes(every), file_name="run-sets-tasks.csv",
                               mime="text/csv", key="rs_grid_csv", on_click="ignore")
    rows = event.selection.rows if event else []
    if rows:
        task = grid.iloc[rows[0]]["task_id"]
        flip = flips.get(task)
        if flip is None:
            st.info(f"{ui.md(task)} did not flip: both run sets solve it about as often. Pick a task marked → A "
                    "or → B.")
        else:  # the comparison was made without the pairs: find this task's best pair now
            try:
                pair = state.cached(metrics.best_pair, store, result.a, result.b, task, flip["winner"])
            except HorizonLensError as exc:
                ui.show_error(exc)
                return
            if pair["a_trajectory"] and pair["b_trajectory"]:
                open_pair({**flip, **pair})
            else:
                st.info(f"{ui.md(task)} has no pair to open: no successful run of the winning side beside a failed "
                        "run of the other in these run sets.")


def _by_facet(result: metrics.Comparison) -> None:
    groups = result.summary["by"]
    if not groups:
        return
    facet = groups[0]["facet"]
    st.markdown(f"**By {ui.md(facet)}**")
    st.dataframe(rfig.facet_rows(groups), hide_index=True, key="rs_by", column_config={
        "A": st.column_config.NumberColumn(format="percent"), "B": st.column_config.NumberColumn(format="percent"),
        "B − A": st.column_config.NumberColumn(format="percent")})
    st.caption("The same statistics per value (a task's value: the most common among its runs). p-values are "
               f"Holm-adjusted across the values; a value with fewer than {metrics.MIN_TASKS} common tasks gets a "
               "note instead of a p-value.")


@st.fragment
def run_sets(store: CorpusStore) -> None:
    """Pick A and B, then every paired statistic on their common tasks."""
    cols = st.columns(2)
    a, b = pick(store, "a", cols[0]), pick(store, "b", cols[1])
    by = st.selectbox("Repeat the statistics by", [NO_FACET, *metrics.FACETS], key="rs_by_facet",
                      help="horizon: bands of task length (median steps of the task's runs).", persist_state="page")
    if a is None or b is None:
        st.info("Pick run set A and run set B (a facet value, or a SQL predicate over trajectories).")
        return
    try:
        # without where each flipped pair parts: that is read for the one task opened (`_grid`)
        result = state.cached(metrics.compare, store, a, b, None if by == NO_FACET else by, divergence=False)
    except HorizonLensError as exc:
        ui.show_error(exc)
        return
    summary = result.summary
    st.markdown(f"**A** · {ui.md(a.name)} — {summary['a']['n_runs']:,} runs on {summary['a']['n_tasks']:,} tasks  \n"
                f"**B** · {ui.md(b.name)} — {summary['b']['n_runs']:,} runs on {summary['b']['n_tasks']:,} tasks")
    if not summary["common_tasks"]:
        st.warning("These run sets share no task: no task_id has a run with a known outcome in both, so there is "
                   "nothing to pair. Pick run sets that ran the same tasks (same task_id).")
        return
    _statistics(summary)
    _by_facet(result)
    names = {"a": a.name, "b": b.name}

    def horizon_and_survival() -> None:
        left, right = st.columns(2)
        with left:
            ui.chart(rfig.by_horizon(summary["by_horizon"]), rfig.GUIDES["horizon"] + " Bars: tasks that flipped "
                     "to each side in that band.", key="rs_horizon", data=None)
        with right:
            km = result.km()
            ui.chart(rfig.survival(km, names, max_t=int(km["t"].quantile(0.99)) if not km.empty else None),
                     "Kaplan–Meier: share of runs (all trials, common tasks only) with no failed check yet after t "
                     "steps; bands are 95% intervals. " + rfig.GUIDES["logrank"], key="rs_km", data=km)

    def pass_k() -> None:
        left, _ = st.columns(2)
        with left:
            ui.chart(rfig.pass_k(summary["pass_k"], names), rfig.GUIDES["pass_k"], key="rs_passk")

    # The statistics above are the answer; the tabs are the ways into it. Only the open one runs and draws, so a
    # first look at two run sets costs no chart (a chart costs about one Streamlit floor by itself here).
    ui.lazy_tabs({TASKS: lambda: _grid(store, result), ALONG_THE_HORIZON: horizon_and_survival, PASS_K: pass_k},
                 key="rs_view")
