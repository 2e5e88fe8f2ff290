"""The floor: a hello-world page, the least any Streamlit page served here can cost.

`horizonlens serve --floor` serves it in place of the app, through the same server, flags and middleware, so
a page's first load and rerun can be read as a multiple of this page's (`horizonlens bench`). With `?chart=1`
it also draws one small Plotly chart: what the first chart of any page costs before the page's own work (the
browser loads and runs the frontend's Plotly bundle for it).
"""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Horizon Lens", layout="wide")
st.title("Hello, world")
runs = st.session_state.setdefault("floor_reruns", 0)
if st.button("Rerun", key="floor_rerun"):
    runs = st.session_state["floor_reruns"] = runs + 1
st.write(f"Reruns: {runs}")
if st.query_params.get("chart"):
    st.plotly_chart({"data": [{"type": "bar", "x": [1, 2, 3], "y": [3, 1, 2]}]}, key="floor_chart")
