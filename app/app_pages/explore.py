"""Explore: corpus summary and the filterable, paged trajectory table."""

from __future__ import annotations

import streamlit as st

from app import state

store = state.get_store()
if store is None:
    st.stop()

st.title("Explore")
summary = state.cached(store, state.cache_key(store), "summary")
cols = st.columns(5)
cols[0].metric("Trajectories", f"{summary['trajectories']:,}")
cols[1].metric("Steps", f"{summary['steps']:,}")
cols[2].metric("Tokens", f"{summary['tokens']:,}")
cols[3].metric("Success rate", f"{(summary['success_rate'] or 0):.0%}")
cols[4].metric("With failed checks", f"{summary['share_with_failed_checks']:.0%}")

st.subheader("By domain")
st.dataframe(state.cached(store, state.cache_key(store), "by_group", "domain").to_pandas(), hide_index=True)

st.subheader("Trajectories")
page = state.cached(store, state.cache_key(store), "list_trajectories", limit=50)
st.caption(f"{page.total:,} trajectories")
st.dataframe(page.rows.to_pandas(), hide_index=True)
