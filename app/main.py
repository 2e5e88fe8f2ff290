"""Horizon Lens entry point: `horizonlens serve` (or `streamlit run app/main.py` inside the venv).

On a server with sign-in nothing below the gate runs until the session has signed in: no page script,
no sidebar, so no corpus data reaches the browser. The pages offered follow the session's role, and the
core checks the role again on every write (horizonlens.storage.access).
"""

from __future__ import annotations

import streamlit as st

from horizonlens.app import auth, sidebar, state
from horizonlens.storage.access import Permission

st.set_page_config(page_title="Horizon Lens", page_icon=":material/biotech:", layout="wide")
auth.install()

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
]
IMPORT = st.Page("app_pages/import_data.py", title="Import", icon=":material/upload_file:", url_path="import")

if not auth.gate():
    # the pages stay registered (a deep link keeps its page and parameters through sign-in) but none runs
    st.navigation([*PAGES, IMPORT], position="hidden")
    st.stop()
if auth.can(Permission.IMPORT):
    PAGES.append(IMPORT)

nav = st.navigation(PAGES)
sidebar.render()
state.sync_url()
nav.run()
