"""Shared resources and cached queries for the pages: the only place Streamlit caching lives.

The DuckDB store and the model are `st.cache_resource` (one per path, shared by every session;
the store gives each query its own cursor, the model is used under its lock). Query results
are `st.cache_data` with bounds. Session state is initialised once with `setdefault`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import urlencode

import streamlit as st

from horizonlens.app import live
from horizonlens.app.params import trajectory_param
from horizonlens.app.ui import md
from horizonlens.errors import CorpusError, HorizonLensError
from horizonlens.query import CorpusStore, open_store
from horizonlens.server.corpora import CorpusRegistry, normalise
from horizonlens.storage import access, as_location
from horizonlens.storage.access import Permission

T = TypeVar("T")


@st.cache_resource(show_spinner=False)
def _registry(config_json: str) -> CorpusRegistry:  # keyed on the configuration: tests start many apps
    return live.config().registry()


def registry() -> CorpusRegistry:
    """The corpora this server serves, by name (one registry per process, shared by every session)."""
    return _registry(live.config().to_env())


def initial_corpus() -> str:
    """The corpus a session opens first: the server's default, else a copy of the bundled sample corpus."""
    served = registry().default
    if served is not None:
        return served.location
    from horizonlens.sample import sample_corpus

    location = str(sample_corpus())
    registry().add(location)
    return location


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
    """The corpus this page shows: the one the URL names (`?corpus=`), else the session's, else the default."""
    name = st.query_params.get("corpus")
    if name:
        location = registry().location(name)
        if location is None:
            st.session_state["corpus_unknown"] = name
        else:
            st.session_state.pop("corpus_unknown", None)
            if st.session_state.get("corpus_path") != location:
                st.session_state["corpus_path"] = location
                st.session_state.pop("trajectory", None)
    return st.session_state.setdefault("corpus_path", initial_corpus())


def corpus_name() -> str | None:
    """The name URLs use for the current corpus (None if it cannot be named: not served, or its name is taken)."""
    return registry().name_of(corpus_path())


def open_corpus(location: str) -> str | None:
    """Show `location` in this session from now on; served to everyone from now on if it was not; its name.

    The URL follows (`?corpus=<name>`), so a reload or a shared link opens it again.
    """
    name = registry().name_of(location)
    if name is None:
        try:
            name = registry().add(location)
        except HorizonLensError as exc:
            st.warning(f"Opened, but links cannot name this corpus: {md(exc)}")
    st.session_state["corpus_path"] = normalise(location)
    st.session_state.pop("trajectory", None)
    st.session_state.pop("corpus_unknown", None)
    if name is not None:
        st.query_params["corpus"] = name
    else:
        st.query_params.pop("corpus", None)
    return name


def link(page: str, **params: str) -> str:
    """A relative link to a page (its url path) that names the current corpus, e.g. for a table's link column."""
    name = corpus_name()
    query = urlencode({**({"corpus": name} if name is not None else {}), **params})
    return f"{page}?{query}" if query else page


def sync_url() -> None:
    """Put the current corpus's name in the URL (navigation between pages drops query parameters)."""
    if st.session_state.get("corpus_unknown"):
        return
    name = corpus_name()
    if name is not None and st.query_params.get("corpus") != name:
        st.query_params["corpus"] = name


def checkpoint_path() -> str:
    return st.session_state.setdefault("checkpoint_path", initial_checkpoint())


def get_store() -> CorpusStore | None:
    """The store for the corpus chosen in the sidebar, or None (with the error shown).

    Refused (AccessDenied, shown) unless the session may read, and may open this corpus: the core checks
    what the sidebar offers.
    """
    try:
        who = access.require(Permission.READ)
        unknown = st.session_state.get("corpus_unknown")
        if unknown:
            raise CorpusError(f"no corpus named {unknown!r} is served here; choose one in the sidebar")
        path = registry().check_open(who, corpus_path())
        store = _store(str(as_location(path).resolve()))
        store.refresh()  # what other writers (imports, replays, labels) published since the last run
        return store
    except HorizonLensError as exc:
        st.error(f"Cannot open the corpus: {md(exc)}")
        return None


def require_store() -> CorpusStore:
    store = get_store()
    if store is None:
        st.info("Choose a corpus in the sidebar.")
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
    """The id of the checkpoint at `path`, or None when it is not a usable checkpoint."""
    from horizonlens.model import usable_checkpoint_id

    return usable_checkpoint_id(path)


def current_checkpoint_id() -> str | None:
    """The id of the checkpoint chosen in the sidebar, or None (none chosen, or not usable)."""
    return checkpoint_id_of(checkpoint_path())


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
    tid = trajectory_param()
    if tid:
        st.session_state["trajectory"] = tid
    return st.session_state.get("trajectory")


def open_trajectory(trajectory_id: str, step: int | None = None) -> None:
    st.session_state["trajectory"] = trajectory_id
    st.session_state["traj_step"] = step
    params = {"trajectory": trajectory_id}
    name = corpus_name()
    if name is not None:
        params["corpus"] = name
    if step is not None:
        params["step"] = str(step)
    st.switch_page("app_pages/trajectory.py", query_params=params)
