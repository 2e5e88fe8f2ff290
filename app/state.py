"""Shared resources and cached queries for the pages: the only place Streamlit caching lives.

The DuckDB store and the model are `st.cache_resource` (one per path, shared by all sessions;
the store hands each query its own cursor). Query results are `st.cache_data` with bounds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import streamlit as st

from analysis.corpus.io import CorpusError
from analysis.corpus.store import CorpusStore, open_store

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO_ROOT / "sample_data" / "corpus"
DEFAULT_CHECKPOINT = REPO_ROOT / "sample_data" / "checkpoint"


def initial_corpus() -> str:
    return os.environ.get("HORIZONLENS_CORPUS", str(DEFAULT_CORPUS))


def initial_checkpoint() -> str:
    env = os.environ.get("HORIZONLENS_CHECKPOINT")
    if env:
        return env
    return str(DEFAULT_CHECKPOINT) if (DEFAULT_CHECKPOINT / "config.json").exists() else ""


@st.cache_resource(max_entries=4, show_spinner="Opening corpus…")
def _store(path: str, mtime: float) -> CorpusStore:
    return open_store(path)


def corpus_path() -> str:
    return st.session_state.setdefault("corpus_path", initial_corpus())


def get_store() -> CorpusStore | None:
    """The store for the corpus chosen in the sidebar, or None (with the error shown) if it won't open."""
    path = corpus_path()
    try:
        manifest = Path(path) / "manifest.json"
        return _store(str(Path(path).resolve()), manifest.stat().st_mtime if manifest.exists() else 0.0)
    except CorpusError as exc:
        st.error(f"Cannot open the corpus: {exc}")
        return None


def cache_key(store: CorpusStore) -> str:
    return str(store.root)


@st.cache_data(max_entries=64, ttl=600, show_spinner=False)
def cached(_store: CorpusStore, key: str, method: str, *args: Any, **kwargs: Any) -> Any:
    """Memoise a read-only store method by (corpus, method, arguments)."""
    return getattr(_store, method)(*args, **kwargs)
