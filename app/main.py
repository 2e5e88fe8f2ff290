"""Horizon Lens entry point: `streamlit run app/main.py` (or `horizonlens serve`)."""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts this file's folder on sys.path, not the repo root; the app imports `app.*`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st  # noqa: E402

from app import sidebar  # noqa: E402

st.set_page_config(page_title="Horizon Lens", page_icon="🔭", layout="wide")

PAGES = [
    st.Page("app_pages/explore.py", title="Explore", icon="🗂️", default=True),
    st.Page("app_pages/trajectory.py", title="Trajectory", icon="🧭", url_path="trajectory"),
    st.Page("app_pages/routing.py", title="Routing", icon="🔀", url_path="routing"),
    st.Page("app_pages/compounding.py", title="Compounding", icon="📉", url_path="compounding"),
    st.Page("app_pages/compare.py", title="Compare", icon="⚖️", url_path="compare"),
    st.Page("app_pages/sql.py", title="SQL", icon="🧮", url_path="sql"),
    st.Page("app_pages/import_data.py", title="Import", icon="📥", url_path="import"),
]

nav = st.navigation(PAGES)
sidebar.render()
nav.run()
