"""Which replayed runs a corpus-level model statistic uses, said beside the statistic (metrics/replay_set.py).

Replays are often chosen to study failures, and a statistic over such a set is biased. Wherever a page shows a
model statistic over the replayed corpus (early warning, routing by domain and teacher, probes, the routing map
and health), it first calls `disclose`: a caption naming the runs when they are the recorded random sample, a
warning when they were chosen by hand, and a switch between the two when a sample exists.
"""

from __future__ import annotations

import streamlit as st

from horizonlens.app import state
from horizonlens.metrics import replay_set
from horizonlens.query import CorpusStore


def disclose(store: CorpusStore, checkpoint_id: str, key: str, within: str = "") -> replay_set.ReplayScope:
    """Show which replayed runs the statistics below use, and return them (`trajectory_ids` None: every one).

    `key` is the page's widget key of the "only the random sample" switch; `within` adds what else narrows the
    runs on this page (a filter), as the end of a sentence.
    """
    use_sample = bool(st.session_state.get(key, True))
    # the record is part of the cache key: recording a sample of runs already replayed changes no replay
    record = replay_set.recorded_sample(store, checkpoint_id)
    scope = state.cached(replay_set.replay_scope, store, checkpoint_id, use_sample, record)
    if scope.random or not use_sample:
        st.toggle("Only the random sample", value=True, key=key, persist_state="page",
                  help="Statistics over runs replayed to study failures are biased; the recorded stratified random "
                       "sample is not. Off: every replayed run.")
    text = f"Runs used: {scope.how}" + (f" {within}" if within else "")
    if scope.random:
        st.caption(text)
    else:
        st.warning(text, icon="⚠️")
    return scope
