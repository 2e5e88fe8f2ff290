"""Shared resources and cached queries for the pages: the only place Streamlit caching lives.

The DuckDB store and the model are `st.cache_resource` (one per path, shared by every session;
the store gives each query its own cursor, the model is used under its lock). Query results
are `st.cache_data` with bounds. Session state is initialised once with `setdefault`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, TypeVar

import streamlit as st

from horizonlens.app.ui import md
from horizonlens.errors import HorizonLensError
from horizonlens.query import CorpusStore, open_store
from horizonlens.storage import as_location

T = TypeVar("T")


def initial_corpus() -> str:
    """The corpus `horizonlens serve` was started with, else a copy of the bundled sample corpus."""
    env = os.environ.get("HORIZONLENS_CORPUS")
    if env:
        return env
    from horizonlens.sample import sample_corpus

    return str(sample_corpus())


def initial_checkpoint() -> str:
    """The checkpoint `serve` was started with ('' for none), else the bundled sample checkpoint."""
    env = os.environ.get("HORIZONLENS_CHECKPOINT")
    if env is not None:
        return env
    from horizonlens.sample import sample_checkpoint

    return str(sample_checkpoint())


@st.cache_resource(max_entries=4, show_spinner="Opening corpus…")
def _store(path: str) -> CorpusStore:
    store = open_store(path)
    store.warm()  # the Explore list's in-memory table is made while the first page draws its overview
    return store


def corpus_path() -> str:
    return st.session_state.setdefault("corpus_path", initial_corpus())


def checkpoint_path() -> str:
    return st.session_state.setdefault("checkpoint_path", initial_checkpoint())


def get_store() -> CorpusStore | None:
    """The store for the corpus chosen in the sidebar, or None (with the error shown)."""
    try:
        store = _store(str(as_location(corpus_path()).resolve()))
        store.refresh()  # what other writers (imports, replays, labels) published since the last run
        return store
    except HorizonLensError as exc:
        st.error(f"Cannot open the corpus: {md(exc)}")
        return None


def require_store() -> CorpusStore:
    store = get_store()
    if store is None:
        st.info("Point the sidebar at a corpus directory (for example `sample_data/corpus`).")
        st.stop()
    return store


@st.cache_data(max_entries=256, ttl=900, show_spinner=False)
def _cached(_store: CorpusStore, _fn: Callable[..., Any], key: tuple[Any, ...], args: tuple[Any, ...],
            kwargs: tuple[tuple[str, Any], ...]) -> Any:
    return _fn(_store, *args, **dict(kwargs))


def cached(fn: Callable[..., T], store: CorpusStore, *args: Any, **kwargs: Any) -> T:
    """Memoise `fn(store, *args, **kwargs)`: an analysis function, or a store method such as `CorpusStore.summary`.

    Keyed on the function's qualified name and the corpus version, so a new import, replay or label
    never serves a stale result.
    """
    key = (fn.__module__, fn.__qualname__, str(store.root), store.version)
    return _cached(store, fn, key, args, tuple(sorted(kwargs.items())))


def clear_query_cache() -> None:
    _cached.clear()


@st.cache_resource(max_entries=2, show_spinner="Loading checkpoint…")
def _model(path: str, device: str, allow_dense: bool) -> Any:
    from horizonlens.model import load_checkpoint

    return load_checkpoint(path, device=device, allow_dense=allow_dense)


def get_model() -> Any | None:
    """The loaded checkpoint (shared by all sessions), or None with the reason shown."""
    from horizonlens.model import CheckpointError

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
    from horizonlens.model import check_files, checkpoint_id

    try:
        check_files(Path(path), allow_pickle=True)
        return checkpoint_id(path)
    except (HorizonLensError, OSError, ValueError):
        return None


@st.cache_resource(max_entries=4, show_spinner=False)
def get_tokenizer(path: str) -> Any:
    from horizonlens.model import load_tokenizer

    return load_tokenizer(path)


def replay_token_count(store: CorpusStore, trajectory_id: str) -> int | None:
    """Tokens a replay of this trajectory will run through the sidebar's checkpoint (None without a usable one).

    Counted with the checkpoint's own tokenizer and template, so the number shown before a replay is the one the
    replay reports; the corpus's `n_tokens` is an estimate made without any tokenizer.
    """
    path = checkpoint_path()
    if not path or checkpoint_id_of(path) is None:
        return None
    return _replay_tokens(store, str(store.root), store.version, trajectory_id, str(Path(path).resolve()))


@st.cache_data(max_entries=256, ttl=900, show_spinner=False)
def _replay_tokens(_store: CorpusStore, root: str, version: tuple[Any, ...], trajectory_id: str,
                   checkpoint: str) -> int:
    from horizonlens.model.files import context_length, read_config
    from horizonlens.model.replay import replay_length

    steps = _store.steps(trajectory_id).to_pylist()
    return replay_length(get_tokenizer(checkpoint), steps, context_length(read_config(Path(checkpoint))))


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
