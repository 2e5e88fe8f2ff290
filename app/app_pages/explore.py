"""Explore: corpus summary, horizon lengths, and the filterable, paged trajectory table.

The overview and the trajectory list are fragments: a widget in one reruns that panel only (a filter change
does not redraw the overview charts, a group-by change does not requery the list). Every query is cached per
corpus version, and the overview reads the corpus aggregates, never the steps.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from horizonlens.app import auth, explore_filters, export_panel, state, ui
from horizonlens.figures import corpus as corpus_figs
from horizonlens.metrics import overview as ov
from horizonlens.query import SORTABLE, CorpusStore, TrajectoryFilter
from horizonlens.storage.access import Permission

PAGE_SIZE = 50
NUMBER_FORMATS = {"reward": "%.2f", "cost_usd": "$%.4f", "duration_s": "%.0f s"}

store = state.require_store()
st.title("Explore")

corpus = state.cached(ov.summary, store)


def build_indexes() -> None:
    """Build (or bring up to date) the search index and the aggregates, then rerun the whole page."""
    from horizonlens.derived import build_all

    with st.spinner("Indexing and summarising the corpus…"):
        build_all(store.root)
    store.refresh()
    state.clear_query_cache()
    st.rerun(scope="app")


if not (store.has_word_index and store.has_aggregates) and auth.can(Permission.IMPORT):
    note = st.columns([5, 1])
    note[0].caption("The search index or the corpus aggregates are missing or out of date: searches scan every step "
                    "and summaries are computed from the steps (slow on a large corpus). Build them once; imports "
                    "keep them up to date.")
    if note[1].button("Build index", key="explore_build_index", icon=":material/build:"):
        build_indexes()

flt = explore_filters.filter_bar(store, int(corpus["max_steps"] or 1))
filtered = explore_filters.is_filtered(flt)
chosen = state.cached(ov.summary, store, flt) if filtered else corpus
selection = f"{chosen['trajectories']:,} of {corpus['trajectories']:,} trajectories" if filtered else None


def headline(col: st.delta_generator.DeltaGenerator, label: str, key: str, fmt: str) -> None:
    """One headline figure for the filtered trajectories, the corpus's own beside it when a filter is on."""
    value, whole = chosen[key], corpus[key]
    show = "—" if value is None else format(value, fmt)
    beside = f"corpus: {'—' if whole is None else format(whole, fmt)}" if filtered else None
    col.metric(label, show, delta=beside, delta_color="off", delta_arrow="off",
               help="For the trajectories matching the filters; beside it, the whole corpus." if filtered else None)


cols = st.columns(6)
headline(cols[0], "Trajectories", "trajectories", ",")
headline(cols[1], "Tasks", "tasks", ",")
headline(cols[2], "Steps", "steps", ",")
headline(cols[3], "Tokens", "tokens", ",")
headline(cols[4], "Success rate", "success_rate", ".0%")
headline(cols[5], "Runs with a failed check", "share_with_failed_checks", ".0%")
if filtered:
    st.caption(f"Figures and charts below are for the {ui.md(selection)} that match the filters.")


@st.fragment
def overview(flt: TrajectoryFilter, filtered: bool) -> None:
    """Outcome and failed-check rates per group, and the horizon-length histogram, for the filtered runs."""
    with st.expander("Overview of the selection" if filtered else "Corpus overview", expanded=True):
        group_by = st.radio("Group by", ["domain", "agent", "teacher", "source"], horizontal=True,
                            key="explore_group")
        left, right = st.columns(2)
        groups = state.cached(ov.group_rates, store, group_by, flt if filtered else None)
        whole = state.cached(ov.group_rates, store, group_by) if filtered else None
        with left:
            ui.chart(corpus_figs.group_rates(groups, group_by, whole, selection),
                     f"Share of successful runs and of failed checks per {group_by}"
                     + ("; the dark tick on each bar is the whole corpus's rate." if filtered else "."),
                     key="explore_groups", data=groups)
        with right:
            unit = st.radio("Length in", ["steps", "tokens"], horizontal=True, key="explore_len_unit")
            column = "n_steps" if unit == "steps" else "n_tokens"
            edges = corpus_figs.length_edges(corpus["max_steps" if unit == "steps" else "max_tokens"])
            counts = state.cached(ov.length_histogram, store, column, edges, flt if filtered else None)
            ui.chart(corpus_figs.horizon_histogram(counts, edges, column, selection),
                     "How long trajectories are (log-spaced bins), stacked by outcome.", key="explore_lengths",
                     data=counts)


@st.fragment
def trajectory_list(flt: TrajectoryFilter) -> None:
    """One page of matching trajectories, sorted and paged; a selected row opens the trajectory."""
    st.subheader("Trajectories")
    s1, s2, _ = st.columns([1.2, 1, 4])
    sort = s1.selectbox("Sort by", SORTABLE, index=SORTABLE.index("started_at"), key="explore_sort")
    descending = s2.toggle("Descending", value=True, key="explore_desc")
    if st.session_state.get("explore_filter") != flt:  # a new filter starts at its first page
        st.session_state["explore_filter"] = flt
        st.session_state["explore_page"] = 0
    page_no = st.session_state.setdefault("explore_page", 0)
    page = state.cached(CorpusStore.list_trajectories, store, flt, sort=sort, descending=descending,
                        offset=page_no * PAGE_SIZE, limit=PAGE_SIZE)
    n_pages = max(1, -(-page.total // PAGE_SIZE))
    nav = st.columns([2, 1, 1, 4])
    nav[0].markdown(f"**{page.total:,}** trajectories · page {page_no + 1} of {n_pages}")
    if nav[1].button("Previous", icon=":material/chevron_left:", disabled=page_no == 0, key="explore_prev"):
        st.session_state["explore_page"] = page_no - 1
        st.rerun(scope="fragment")
    if nav[2].button("Next", icon=":material/chevron_right:", disabled=page_no + 1 >= n_pages, key="explore_next"):
        st.session_state["explore_page"] = page_no + 1
        st.rerun(scope="fragment")
    if auth.can(Permission.EXPORT):  # viewers of a team server read; taking runs out is an editor's
        export_panel.render(store, flt, page.total)

    df = page.rows.to_pandas()
    if df.empty:
        st.info("No trajectory matches these filters.")
        return
    # the id and the sort column come first and stay pinned, so the column sorted by is always in view
    order = ["trajectory_id", *([sort] if sort != "trajectory_id" else []),
             *(c for c in df.columns if c not in ("trajectory_id", sort))]
    arrow = "↓" if descending else "↑"

    def column(name: str) -> Any:  # a column config (st.column_config's TypedDict)
        label, pinned = (f"{name} {arrow}" if name == sort else name), name in order[:2]
        if name in NUMBER_FORMATS:
            return st.column_config.NumberColumn(label, format=NUMBER_FORMATS[name], pinned=pinned)
        return st.column_config.Column(label, pinned=pinned)

    config = {name: column(name) for name in order}
    picked = st.dataframe(df, hide_index=True, on_select="rerun", selection_mode="single-row", key="explore_table",
                          column_order=order, column_config=config)
    st.caption(f"Sorted by {sort} ({'descending' if descending else 'ascending'}; pinned beside the id). "
               "Select a row to open the trajectory step by step.")
    rows = picked.selection.rows if picked else []
    if rows:
        state.open_trajectory(df.iloc[rows[0]]["trajectory_id"])


overview(flt, filtered)
trajectory_list(flt)
