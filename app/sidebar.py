"""The sidebar: which corpus and checkpoint the pages look at, validated when changed."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from horizonlens.app import state, ui
from horizonlens.corpus import read_manifest
from horizonlens.errors import CorpusError


def render() -> None:
    with st.sidebar:
        st.markdown("### :material/biotech: Horizon Lens")
        _corpus()
        _checkpoint()


def _corpus() -> None:
    current = state.corpus_path()
    typed = st.text_input("Corpus directory", value=current, key="sidebar_corpus_input",
                          help="A directory with manifest.json, trajectories/ and steps/ (docs/corpus-format.md), "
                               "or s3://bucket/prefix (credentials from the AWS_* environment variables).")
    if typed != current:
        try:
            read_manifest(typed)
        except CorpusError as exc:
            st.error(ui.md(exc))
        else:
            st.session_state["corpus_path"] = typed
            st.session_state.pop("trajectory", None)
            st.rerun()


def _checkpoint() -> None:
    from horizonlens.model.loader import CheckpointError, check_files

    current = state.checkpoint_path()
    typed = st.text_input("Checkpoint directory (optional)", value=current, key="sidebar_ckpt_input",
                          help="A local MoE checkpoint: config.json, *.safetensors, tokenizer files "
                               "(docs/replay.md). Leave empty to browse without a model.")
    if typed != current:
        if typed:
            try:
                check_files(Path(typed), allow_pickle=False)
            except CheckpointError as exc:
                st.error(ui.md(exc))
                return
        st.session_state["checkpoint_path"] = typed
        st.rerun()
    if current:
        ckpt = state.checkpoint_id_of(current)
        st.caption(f"checkpoint id {ui.md(ckpt)}" if ckpt else "checkpoint not usable")
        st.checkbox("Replay without routing (non-MoE model)", key="allow_dense")
    else:
        st.caption("No checkpoint: browsing and compounding work; replay needs one (docs/replay.md).")
