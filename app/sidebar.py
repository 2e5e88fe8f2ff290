"""The sidebar: which corpus (and checkpoint) the pages look at, validated on change."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from analysis.corpus.io import CorpusError, read_manifest
from app import state


def render() -> None:
    with st.sidebar:
        st.markdown("### 🔭 Horizon Lens")
        current = state.corpus_path()
        typed = st.text_input("Corpus directory", value=current, key="sidebar_corpus_input",
                              help="A directory with manifest.json, trajectories/ and steps/ (docs/corpus-format.md).")
        if typed != current:
            try:
                read_manifest(Path(typed))
            except CorpusError as exc:
                st.error(str(exc))
            else:
                st.session_state["corpus_path"] = typed
                st.rerun()
