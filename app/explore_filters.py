"""The Explore page's filter bar: every widget that narrows the trajectories, read into one TrajectoryFilter.

The bar sits above the headline figures and charts, so a filter change reruns the page and all of them follow it.
"""

from __future__ import annotations

import streamlit as st

from horizonlens.app import state
from horizonlens.query import CorpusStore, TrajectoryFilter
from horizonlens.query import labels as label_queries

MATCH_WORDS, MATCH_EXACT = "all words", "exact text"


def filter_bar(store: CorpusStore, max_steps: int) -> TrajectoryFilter:
    """The filter widgets (keys `explore_*`) and the filter they stand for."""
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
        top = max(2, max_steps)
        lo, hi = g4.slider("Steps", 1, top, (1, top), key="explore_steps")
        h1, h2, h3 = st.columns([3, 1.3, 2])
        text = h1.text_input("Search task and step content (case-insensitive)", key="explore_text",
                             placeholder="e.g. insufficient balance, FAILED test_, Error:")
        mode = h2.radio("Match", [MATCH_WORDS, MATCH_EXACT], key="explore_text_mode", help=_match_help(store))
        labels = h3.multiselect("Has label", state.cached(label_queries.label_values, store), key="explore_labels",
                                help="Runs with one of these labels, on any step or on the whole run.")
        words = mode == MATCH_WORDS and store.has_word_index
        if text and mode == MATCH_WORDS and not store.has_word_index:
            st.warning("**All words** needs the search index, which this corpus does not have yet (build it with the "
                       "button above the filters, or `horizonlens index CORPUS`); until then this search matches "
                       "the **exact text**.", icon=":material/info:")
    return TrajectoryFilter(domains=domains, agents=agents, teachers=teachers, sources=sources, outcomes=outcomes,
                            min_steps=lo if lo > 1 else None, max_steps=hi if hi < max_steps else None,
                            has_failed_checks={"any": None, "has failed checks": True,
                                               "no failed checks": False}[failed],
                            tool=None if tool == "any" else tool, text=text or None,
                            text_mode="words" if words else "exact", labels=labels)


def _match_help(store: CorpusStore) -> str:
    """What each match mode does, and how this corpus answers it."""
    words = ("through its search index" if store.has_word_index else
             "only with the search index, which this corpus does not have yet (build it above): until then a search "
             "matches the exact text")
    return (f"All words: every word occurs somewhere in the trajectory (task or any step); answered {words}. "
            f"Exact text: a literal substring of one field (%, _ and \\ mean themselves); answered "
            f"{'through the search index' if store.has_word_index else 'by scanning the steps'}.")


def is_filtered(flt: TrajectoryFilter) -> bool:
    """Whether the filter narrows the corpus at all."""
    return flt != TrajectoryFilter(text_mode=flt.text_mode)
