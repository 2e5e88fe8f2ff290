"""The sidebar: who is signed in, which corpus and checkpoint the pages look at, and news from watched folders.

Viewers choose among the corpora the server serves. Editors may also open a corpus folder by path, inside
the folders the server allows; the owner of a local server anywhere. The checkpoint is the server's unless
the owner changes it. The core checks the same rules (state.get_store, CorpusRegistry.check_open).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from horizonlens.app import auth, live, state, ui
from horizonlens.corpus import read_manifest
from horizonlens.errors import HorizonLensError
from horizonlens.query import CorpusStore
from horizonlens.storage.access import Permission

NEWS_EVERY_S = 3.0  # how often a session looks for runs that arrived in a watched folder


def render() -> None:
    with st.sidebar:
        st.markdown("### :material/biotech: Horizon Lens")
        auth.account_box()
        _corpus()
        _checkpoint()
        if live.config().watch:
            count = _run_count()
            if count is not None:
                st.session_state["news_seen"] = count  # a whole-page run shows every run there is
            _news()


def _corpus() -> None:
    registry = state.registry()
    current = state.corpus_path()
    name = None if st.session_state.get("corpus_unknown") else state.corpus_name()
    names = registry.names()
    if name is not None and name not in names:
        names.append(name)
    if names:
        st.session_state["sidebar_corpus_pick"] = name  # the box shows the corpus the page shows
        st.selectbox("Corpus", names, key="sidebar_corpus_pick", placeholder="choose a corpus", on_change=_picked,
                     help="The corpora this server serves. The page's link names the corpus, so it can be reloaded "
                          "and shared.")
    who = auth.principal()
    if not (who.anywhere or who.can(Permission.OPEN_PATH)):
        return
    where = ("any corpus folder this machine's user can read" if who.anywhere else
             "a corpus folder beside a served corpus, or inside: "
             + ", ".join(map(str, registry.allowed_folders())))
    if who.anywhere:
        st.session_state["sidebar_corpus_input"] = current  # the field shows the corpus the page shows
    st.text_input("Open a corpus folder", key="sidebar_corpus_input", on_change=_typed,
                  help=f"A directory with manifest.json, trajectories/ and steps/ (docs/corpus-format.md), or "
                       f"s3://bucket/prefix (credentials from the AWS_* environment variables). Here: {where}.")
    problem = st.session_state.pop("sidebar_corpus_problem", None)
    if problem:
        st.error(ui.md(problem))


def _typed() -> None:
    """A corpus folder typed in: opened if this session may open it, else the reason is shown."""
    typed = (st.session_state.get("sidebar_corpus_input") or "").strip()
    if not typed or typed == state.corpus_path():
        return
    try:
        location = state.registry().check_open(auth.principal(), typed)
        read_manifest(location)
    except HorizonLensError as exc:
        st.session_state["sidebar_corpus_problem"] = str(exc)
    else:
        state.open_corpus(location)


def _picked() -> None:
    """A corpus chosen in the box: open it (the page then reruns with it)."""
    location = state.registry().location(st.session_state["sidebar_corpus_pick"] or "")
    if location is not None:
        state.open_corpus(location)


def _checkpoint() -> None:
    from horizonlens.model.loader import CheckpointError, check_files

    current = state.checkpoint_path()
    if auth.principal().anywhere:
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


def _run_count() -> int | None:
    store = state.get_store()
    return None if store is None else int(state.cached(CorpusStore.summary, store)["trajectories"])


@st.fragment(run_every=NEWS_EVERY_S)
def _news() -> None:
    """Runs that arrived since this session last drew its page: a notice, and a button that shows them."""
    count = _run_count()
    if count is None:
        return
    seen = st.session_state.setdefault("news_seen", count)
    if count > seen:
        st.info(f"{count - seen:,} new run{'s' if count - seen != 1 else ''} arrived in this corpus.",
                icon=":material/fiber_new:")
        if st.button("Show them", key="news_refresh", icon=":material/refresh:"):
            st.session_state["news_seen"] = count
            state.clear_query_cache()
            st.rerun(scope="app")
    elif count < seen:
        st.session_state["news_seen"] = count
    watching = ", ".join(Path(f).name for f in live.config().watch)
    st.caption(f"Watching {ui.md(watching)} · {count:,} runs")
