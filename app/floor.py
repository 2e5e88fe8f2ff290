"""The floor: a hello-world page, the least any Streamlit page served here can cost.

`horizonlens serve --floor` serves it in place of the app, through the same server, flags and middleware, so
a page's first load and rerun can be read as a multiple of this page's (`horizonlens bench`). With `?chart=1`
it also draws one small Plotly chart: what the first chart of any page costs before the page's own work (the
browser loads and runs the frontend's Plotly bundle for it).

`?with=PART,PART` adds the parts a page is built from, one of each (`PARTS`), so that the page bench can say
what each costs beside the floor (`bench.pages.FLOOR_PARTS`, `measure_pages(parts=True)`).
"""

from __future__ import annotations

import streamlit as st


def _dataframe() -> None:
    st.dataframe({"step": list(range(40)), "action": [f"read_file(path={i})" for i in range(40)]}, key="floor_df")


def _table() -> None:
    st.table({"step": list(range(10)), "action": [f"read_file(path={i})" for i in range(10)]})


def _code() -> None:
    st.code("read_file(path='lib/x.py')\n" * 10)


def _markdown() -> None:
    for i in range(20):
        st.markdown(f"**step {i}** · `read_file` · check passed")


def _widgets() -> None:
    for i in range(10):
        st.selectbox(f"Choice {i}", ["a", "b", "c"], key=f"floor_box_{i}")


def _sidebar() -> None:
    with st.sidebar:
        st.markdown("### Horizon Lens")
        st.selectbox("Corpus", ["sample"], key="floor_side_corpus")


def _metrics() -> None:
    for col, i in zip(st.columns(4), range(4), strict=True):
        col.metric(f"Figure {i}", i)


PARTS = {"dataframe": _dataframe, "table": _table, "code": _code, "markdown": _markdown, "widgets": _widgets,
         "sidebar": _sidebar, "metrics": _metrics}

st.set_page_config(page_title="Horizon Lens", layout="wide")
st.title("Hello, world")
runs = st.session_state.setdefault("floor_reruns", 0)
if st.button("Rerun", key="floor_rerun"):
    runs = st.session_state["floor_reruns"] = runs + 1
st.write(f"Reruns: {runs}")
if st.query_params.get("chart"):
    st.plotly_chart({"data": [{"type": "bar", "x": [1, 2, 3], "y": [3, 1, 2]}]}, key="floor_chart")
for part in filter(None, (st.query_params.get("with") or "").split(",")):
    if part in PARTS:  # an unknown part is ignored: the floor never fails
        PARTS[part]()
