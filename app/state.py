"""Shared resources and cached queries for the pages: the only place Streamlit caching lives.

The DuckDB store and the model are `st.cache_resource` (one per path, shared by every session;
the store gives each query its own cursor, the model is used under its lock). Query results
are `st.cache_data` with bounds. Session state is initialised once with `setdefault`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import streamlit as st

from analysis.corpus.io import CorpusError
from analysis.corpus.store import CorpusStore, open_store
from app.ui import md

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO_ROOT / "sample_data" / "corpus"
DEFAULT_CHECKPOINT = REPO_ROOT / "sample_data" / "checkpoint"


def initial_corpus() -> str:
    return os.environ.get("HORIZONLENS_CORPUS", str(DEFAULT_CORPUS))


def initial_checkpoint() -> str:
    env = os.environ.get("HORIZONLENS_CHECKPOINT")
    if env is not None:
        return env
    return str(DEFAULT_CHECKPOINT) if (DEFAULT_CHECKPOINT / "config.json").exists() else ""


@st.cache_resource(max_entries=4, show_spinner="Opening corpus…")
def _store(path: str, mtime: float) -> CorpusStore:
    return open_store(path)


def corpus_path() -> str:
    return st.session_state.setdefault("corpus_path", initial_corpus())


def checkpoint_path() -> str:
    return st.session_state.setdefault("checkpoint_path", initial_checkpoint())


def get_store() -> CorpusStore | None:
    """The store for the corpus chosen in the sidebar, or None (with the error shown)."""
    path = Path(corpus_path())
    try:
        manifest = path / "manifest.json"
        return _store(str(path.resolve()), manifest.stat().st_mtime if manifest.exists() else 0.0)
    except CorpusError as exc:
        st.error(f"Cannot open the corpus: {md(exc)}")
        return None


def require_store() -> CorpusStore:
    store = get_store()
    if store is None:
        st.info("Point the sidebar at a corpus directory (for example `sample_data/corpus`).")
        st.stop()
    return store


@st.cache_data(max_entries=256, ttl=900, show_spinner=False)
def _cached(_store: CorpusStore, key: tuple[Any, ...], fn: str, args: tuple, kwargs: tuple) -> Any:
    import importlib

    module, name = fn.rsplit(".", 1)
    if module == "store":
        return getattr(_store, name)(*args, **dict(kwargs))
    return getattr(importlib.import_module(module), name)(_store, *args, **dict(kwargs))


def cached(store: CorpusStore, fn: str, *args: Any, **kwargs: Any) -> Any:
    """Memoise `store.<method>` (fn='store.summary') or `module.func(store, ...)` by corpus and replays."""
    key = (str(store.root), tuple(store.replay_checkpoints), store.has_word_index)
    return _cached(store, key, fn, args, tuple(sorted(kwargs.items())))


def clear_query_cache() -> None:
    _cached.clear()


@st.cache_resource(max_entries=2, show_spinner="Loading checkpoint…")
def _model(path: str, device: str, allow_dense: bool) -> Any:
    from analysis.model.loader import load_checkpoint

    return load_checkpoint(path, device=device, allow_dense=allow_dense)


def get_model() -> Any | None:
    """The loaded checkpoint (shared by all sessions), or None with the reason shown."""
    from analysis.model.loader import CheckpointError

    path = checkpoint_path()
    if not path:
        return None
    try:
        return _model(str(Path(path).resolve()), "auto", bool(st.session_state.get("allow_dense", False)))
    except CheckpointError as exc:
        st.error(f"Cannot load the checkpoint: {md(exc)}")
        return None


@st.cache_data(max_entries=8, show_spinner=False)
def checkpoint_id_of(path: str) -> str | None:
    from analysis.model.loader import CheckpointError, check_files, checkpoint_id

    try:
        check_files(Path(path), allow_pickle=True)
        return checkpoint_id(path)
    except (CheckpointError, OSError, ValueError):
        return None


@st.cache_resource(max_entries=4, show_spinner=False)
def get_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def selected_trajectory() -> str | None:
    """The trajectory the user is looking at: from the URL (deep link) or the session."""
    params = st.query_params
    tid = params.get("trajectory")
    if tid:
        st.session_state["trajectory"] = tid
    return st.session_state.get("trajectory")


def open_trajectory(trajectory_id: str, step: int | None = None) -> None:
    st.session_state["trajectory"] = trajectory_id
    st.session_state["traj_step"] = step
    params = {"trajectory": trajectory_id}
    if step is not None:
        params["step"] = str(step)
    st.switch_page("app_pages/trajectory.py", query_params=params)
