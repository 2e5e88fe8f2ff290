"""SQL: a read-only console over the corpus views, with a row cap and a time limit.

The console is a fragment: choosing an example or running a query reruns the console only.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from horizonlens.app import state, ui
from horizonlens.errors import SqlError
from horizonlens.query import EXAMPLES, CorpusStore, run_sql

store = state.require_store()
st.title("SQL")
views = state.cached(CorpusStore.views, store)
st.caption("One read-only SELECT over the views " + ", ".join(f"`{v.name}`" for v in views) + ". Writes, COPY, "
           "ATTACH, settings and files outside the corpus are refused.")
# Sent with the page although closed: the page's results are tables, so the browser loads its table component
# with the first load rather than on the first Run.
with st.expander("Views and their columns"):
    # column names come from the corpus files (extra columns are allowed): shown as table cells, i.e. as text
    st.dataframe(pd.DataFrame([{"view": v.name, "dataset": v.part, "holds": v.doc,
                                "columns": ", ".join(f"{c} {t}" for c, t in v.columns)} for v in views]),
                 hide_index=True, key="sql_views",
                 column_config={"holds": st.column_config.TextColumn(width="medium"),
                                "columns": st.column_config.TextColumn(width="large")})


@st.fragment
def console() -> None:
    """The query editor, its limits, and the last result (a fragment: running a query reruns only this)."""
    example = st.selectbox("Examples", ["(write your own)", *EXAMPLES], key="sql_example")
    default = EXAMPLES.get(example, st.session_state.get("sql_text", EXAMPLES["Failure rate by domain"]))
    sql_text = st.text_area("Query", value=default, height=180, key=f"sql_text_{example}")
    c = st.columns([1, 1, 4])
    cap = c[0].number_input("Row cap", 1, 100_000, 5_000, key="sql_cap")
    timeout = c[1].number_input("Time limit (s)", 1, 120, 15, key="sql_timeout")
    if st.button("Run", type="primary", key="sql_run", icon=":material/play_arrow:"):
        st.session_state["sql_text"] = sql_text
        try:
            st.session_state["sql_result"] = run_sql(store, sql_text, row_cap=int(cap), timeout_s=float(timeout))
            st.session_state["sql_error"] = None
        except SqlError as exc:
            st.session_state["sql_result"] = None
            st.session_state["sql_error"] = str(exc)
    if st.session_state.get("sql_error"):
        ui.show_error(st.session_state["sql_error"])  # the message quotes the user's text and names from the corpus
    result = st.session_state.get("sql_result")
    if result is not None:
        df = result.table.to_pandas()
        st.dataframe(df, hide_index=True, key="sql_table")
        st.caption(" ".join([f"{len(df):,} rows.", *result.notes]))
        ui.table_downloads(df, "query", key="sql_dl", arrow=result.table)


console()
