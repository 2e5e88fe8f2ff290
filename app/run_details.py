"""The Trajectory page's Run details: why a run ended as it did, beside what its source expected.

One call into `metrics.reference.run_reference`, then: where the outcome comes from (said outright when a failed
run has no failed check), the first divergence from the expected actions with a link to its step, the expected
actions aligned with the run's tool calls, expected outputs and tests, and the source's metadata as text.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pandas as pd
import streamlit as st

from horizonlens.app import state, ui
from horizonlens.metrics.reference import MISSING, AlignedAction, RunReference, run_reference
from horizonlens.query import CorpusStore

TABLE_ROWS = 12  # rows of the alignment table shown before it scrolls


def render(store: CorpusStore, info: dict, go_to: Callable[[int], None]) -> None:
    """The summary lines (always shown) and the Run details expander of one run."""
    tid = info["trajectory_id"]
    run = state.cached(run_reference, store, tid)
    if run is None:
        return
    _summary(run, info, go_to)
    # Closed, the panel sends nothing: its tables and code blocks would make every first load fetch and run
    # the browser's table and code components for a panel most visits never open.
    details = st.expander("Run details: outcome, expected actions and source metadata", expanded=False,
                          key="run_details_open", on_change="rerun")
    with details:
        if not details.open:
            return
        st.markdown(f"**Outcome:** {ui.md(info['outcome'])} — it comes from {ui.md(run.reference.outcome_source)}.")

        def expected() -> None:
            _alignment(run, tid, go_to)
            _outputs(run, go_to)
            _tests(run)

        def metadata() -> None:
            ui.untrusted("The run's metadata as the importer stored it", _pretty(info.get("metadata")),
                         key=f"run_meta_{tid}", language="json")

        ui.lazy_tabs({"Expected vs. actual": expected, "Source metadata": metadata}, key="run_details_tab")


def _summary(run: RunReference, info: dict, go_to: Callable[[int], None]) -> None:
    if info["outcome"] == "failure" and run.failed_checks == 0:
        checks = f"none of its {run.checks:,} checks failed" if run.checks else "it has no checks"
        st.warning(f"This run failed, yet {checks}: the outcome comes from {ui.md(run.reference.outcome_source)}. "
                   "Run details below set what the source expected beside what the agent did.",
                   icon=":material/help:")
    first = run.alignment.first_divergence if run.alignment else None
    if first is not None:
        step = _link_step(first, run)
        cols = st.columns([6, 1.4])
        cols[0].markdown(f":material/call_split: **First divergence from the expected actions** at step {step}: "
                         f"{_describe(first)}")
        cols[1].button(f"Go to step {step}", key="run_first_divergence", on_click=go_to, args=(step,),
                       icon=":material/arrow_forward:")
    elif run.alignment is not None and run.alignment.rows:
        st.caption("Every expected action that can change the outcome was taken with the expected arguments.")


def _link_step(row: AlignedAction, run: RunReference) -> int:
    """The step a row links to: its call, or where a missing action was due (the last step if by the end)."""
    at = row.at_step
    return run.last_step if at is None else at


def _describe(row: AlignedAction) -> str:
    """One row in words (untrusted values escaped)."""
    tool = f"**{ui.md(row.name, limit=80)}**" if row.name else "a tool"
    if row.status == MISSING:
        when = "before this step" if row.due_step is not None else "by the end of the run"
        return f"expected call of {tool} missing ({when})"
    if row.differences:
        shown = "; ".join(d.text() for d in row.differences[:3])
        more = f" (+{len(row.differences) - 3} more)" if len(row.differences) > 3 else ""
        return f"{ui.md(row.status)} of {tool}: {ui.md(shown)}{more}"
    return f"{ui.md(row.status)} call of {tool}"


def _alignment(run: RunReference, tid: str, go_to: Callable[[int], None]) -> None:
    if run.alignment is None:
        st.caption("The source names no expected actions for this run.")
        return
    counts = run.alignment.counts()
    st.markdown("**Expected actions beside the agent's tool calls** — " + ", ".join(
        f"{n} {status}" for status, n in counts.items()))
    table = run.alignment.table()
    if table.empty:
        st.caption("Neither expected actions nor tool calls.")
        return
    key = f"run_alignment_{tid}"

    def jump() -> None:
        rows = st.session_state[key].selection.rows
        if rows:
            step = table.iloc[rows[0]]["step"]
            go_to(int(step) if pd.notna(step) else run.last_step)

    shown = table[["status", "step", "tool", "differences", "expected", "given", "divergence", "check_passed"]].copy()
    shown["step"] = [str(s) if pd.notna(s) else "by the end" for s in table["step"]]
    st.dataframe(shown, hide_index=True, key=key, on_select=jump,
                 selection_mode="single-row", height=min(38 + 35 * len(table), 38 + 35 * TABLE_ROWS),
                 column_config={
                     "status": st.column_config.TextColumn(width=110),
                     "step": st.column_config.TextColumn("step", width="small", help="The call's step; for a "
                                                         "missing action, the step before which it was due, or "
                                                         "'by the end' if no later expected action was taken"),
                     "expected": st.column_config.TextColumn("expected arguments", width="medium"),
                     "given": st.column_config.TextColumn("given arguments", width="medium"),
                     "differences": st.column_config.TextColumn(width="medium"),
                     "divergence": st.column_config.CheckboxColumn(
                         help="Can change the outcome: not a tool the source says writes nothing"),
                     "check_passed": st.column_config.CheckboxColumn("check passed")})
    st.caption("Select a row to go to its step. Matched: same tool and arguments; wrong arguments: the closest call "
               "of the expected tool, each differing argument with both values; missing: never called; extra: "
               "called but not expected. Arguments the reference does not name are listed but do not count.")


def _outputs(run: RunReference, go_to: Callable[[int], None]) -> None:
    if not run.outputs:
        return
    st.markdown("**Expected outputs** (texts the agent had to say)")
    for i, out in enumerate(run.outputs):
        cols = st.columns([6, 1.4])
        if out.step is None:
            cols[0].markdown(f":red[:material/cancel:] **{ui.md(out.text, limit=200)}** — never said")
        else:
            cols[0].markdown(f":green[:material/check_circle:] **{ui.md(out.text, limit=200)}** — said at step "
                             f"{out.step}")
            cols[1].button(f"Step {out.step}", key=f"run_output_{i}", on_click=go_to, args=(out.step,))


def _tests(run: RunReference) -> None:
    tests = run.reference.tests
    if not tests:
        return
    st.markdown("**Tests the harness expected to pass**")
    st.dataframe(pd.DataFrame([{"test": t.test, "group": t.group, "passed": t.passed} for t in tests]),
                 hide_index=True, key="run_tests")


def _pretty(metadata: str | None) -> str:
    """The metadata JSON indented for reading (as written when it does not parse)."""
    try:
        return json.dumps(json.loads(metadata or "{}"), indent=2, ensure_ascii=False)
    except (json.JSONDecodeError, TypeError):
        return metadata or ""
