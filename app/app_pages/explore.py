"""Explore: corpus summary, horizon lengths, and the filterable, paged trajectory table.

The overview and the trajectory list are fragments: a widget in one reruns that panel only (a filter change
does not redraw the overview charts, a group-by change does not requery the list). Every query is cached per
corpus version, and the overview reads the corpus aggregates, never the steps.
"""

from __future__ import annotations

import streamlit as st

from horizonlens.app import auth, export_panel, state, ui
from horizonlens.figures import corpus as corpus_figs
from horizonlens.figures import formatting as fmt
from horizonlens.query import SORTABLE, CorpusStore, TrajectoryFilter
from horizonlens.query import labels as label_queries
from horizonlens.storage.access import Permission

PAGE_SIZE = 50
MATCH_WORDS, MATCH_EXACT = "all words", "exact text"

store = state.require_store()
st.title("Explore")

summary = state.cached(CorpusStore.summary, store)
cols = st.columns(6)
cols[0].metric("Trajectories", fmt.count(summary["trajectories"]))
cols[1].metric("Tasks", fmt.count(summary["tasks"]))
cols[2].metric("Steps", fmt.count(summary["steps"] or 0))
cols[3].metric("Tokens", fmt.count(summary["tokens"] or 0))
cols[4].metric("Success rate", fmt.share(summary["success_rate"]))
cols[5].metric("Runs with a failed check", fmt.share(summary["share_with_failed_checks"] or 0))


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


@st.fragment
def overview() -> None:
    """Outcome and failed-check rates per group, and the horizon-length histogram."""
    with st.expander("Corpus overview", expanded=True):
        group_by = st.radio("Group by", ["domain", "agent", "teacher", "source"], horizontal=True,
                            key="explore_group")
        left, right = st.columns(2)
        groups = state.cached(CorpusStore.by_group, store, group_by).to_pandas()
        with left:
            ui.chart(corpus_figs.group_rates(groups, group_by),
                     f"Share of successful runs and of failed checks per {group_by}.", key="explore_groups",
                     data=groups)
        with right:
            unit = st.radio("Length in", ["steps", "tokens"], horizontal=True, key="explore_len_unit")
            column = "n_steps" if unit == "steps" else "n_tokens"
            edges = corpus_figs.length_edges(summary["max_steps" if unit == "steps" else "max_tokens"])
            counts = state.cached(CorpusStore.length_histogram, store, column, edges).to_pandas()
            ui.chart(corpus_figs.horizon_histogram(counts, edges, column),
                     "How long trajectories are (log-spaced bins), stacked by outcome.", key="explore_lengths")


@st.fragment
def trajectory_list() -> None:
    """The filters, one page of matching trajectories, and paging; a selected row opens the trajectory."""
    st.subheader("Trajectories")
    with st.container(border=True):
        f1, f2, f3, f4 = st.columns(4)
        domains = f1.multiselect("Domain", state.cached(CorpusStore.distinct, store, "domain"), key="explore_domains")
        agents = f2.multiselect("Agent", state.cached(CorpusStore.distinct, store, "agent"), key="explore_agents")
        teachers = f3.multiselect("Teacher", state.cached(CorpusStore.distinct, store, "teacher"),
                                  key="explore_teachers")
        sources = f4.multiselect("Source", state.cached(CorpusStore.distinct, store, "source"), key="explore_sources")
        g1, g2, g3, g4 = st.columns(4)
        outcomes = g1.multiselect("Outcome", state.cached(CorpusStore.distinct, store, "outcome"),
                                  key="explore_outcomes")
        failed = g2.selectbox("Failed checks", ["any", "has failed checks", "no failed checks"], key="explore_failed")
        tool = g3.selectbox("Uses tool", ["any", *state.cached(CorpusStore.tools, store)], key="explore_tool")
        max_steps = int(summary["max_steps"] or 1)
        lo, hi = g4.slider("Steps", 1, max(2, max_steps), (1, max(2, max_steps)), key="explore_steps")
        h1, h2, h3, h4 = st.columns([3, 1.3, 1, 1])
        text = h1.text_input("Search task and step content (case-insensitive)", key="explore_text",
                             placeholder="e.g. insufficient balance, FAILED test_, Error:")
        how = "index" if store.has_word_index else "scan"
        modes = [MATCH_WORDS, MATCH_EXACT] if store.has_word_index else [MATCH_EXACT]
        mode = h2.radio("Match", modes, key="explore_text_mode",
                        help=f"All words: every word occurs somewhere in the trajectory. Exact text: a literal "
                             f"substring of one field (%, _ and \\ mean themselves). This corpus answers both "
                             f"through its {how}.")
        sort = h3.selectbox("Sort by", SORTABLE, index=SORTABLE.index("started_at"), key="explore_sort")
        descending = h4.toggle("Descending", value=True, key="explore_desc")
        labels = st.multiselect("Has label", state.cached(label_queries.label_values, store), key="explore_labels",
                                help="Runs with one of these labels, on any step or on the whole run.")

    flt = TrajectoryFilter(domains=domains, agents=agents, teachers=teachers, sources=sources, outcomes=outcomes,
                           min_steps=lo if lo > 1 else None, max_steps=hi if hi < max_steps else None,
                           has_failed_checks={"any": None, "has failed checks": True,
                                              "no failed checks": False}[failed],
                           tool=None if tool == "any" else tool, text=text or None,
                           text_mode="words" if mode == MATCH_WORDS else "exact", labels=labels)
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
    selection = st.dataframe(
        df, hide_index=True, on_select="rerun", selection_mode="single-row", key="explore_table",
        column_config={"reward": st.column_config.NumberColumn(format="%.2f"),
                       "cost_usd": st.column_config.NumberColumn(format="$%.4f"),
                       "duration_s": st.column_config.NumberColumn(format="%.0f s")})
    st.caption("Select a row to open the trajectory step by step.")
    rows = selection.selection.rows if selection else []
    if rows:
        state.open_trajectory(df.iloc[rows[0]]["trajectory_id"])


overview()
trajectory_list()
