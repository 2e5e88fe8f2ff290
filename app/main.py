"""Horizon Lens entry point: `horizonlens serve` (or `streamlit run app/main.py` inside the venv)."""

from __future__ import annotations

import streamlit as st

from horizonlens.app import sidebar

st.set_page_config(page_title="Horizon Lens", page_icon=":material/biotech:", layout="wide")

PAGES = [
    st.Page("app_pages/explore.py", title="Explore", icon=":material/table_view:", default=True),
    st.Page("app_pages/trajectory.py", title="Trajectory", icon=":material/route:", url_path="trajectory"),
    st.Page("app_pages/routing.py", title="Routing", icon=":material/alt_route:", url_path="routing"),
    st.Page("app_pages/compounding.py", title="Compounding", icon=":material/trending_down:", url_path="compounding"),
    st.Page("app_pages/failure_modes.py", title="Failure modes", icon=":material/bug_report:",
            url_path="failure_modes"),
    st.Page("app_pages/tools.py", title="Tools", icon=":material/build:", url_path="tools"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
    st.Page("app_pages/sql.py", title="SQL", icon=":material/terminal:", url_path="sql"),
    st.Page("app_pages/import_data.py", title="Import", icon=":material/upload_file:", url_path="import"),
]

nav = st.navigation(PAGES)
sidebar.render()
nav.run()
