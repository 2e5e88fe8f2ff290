"""Labels on the Trajectory page: the run's and the current step's labels; add, edit (new version), delete.

Every write is one transaction on the corpus's annotations dataset (horizonlens.labels.annotations);
the store then picks the new state up and the cached queries key on it. Label text is untrusted: it is
shown in tables and code blocks, never as markdown.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from horizonlens.app import auth, state, ui
from horizonlens.errors import HorizonLensError
from horizonlens.labels import annotations as label_store
from horizonlens.labels.annotations import Label
from horizonlens.query import CorpusStore
from horizonlens.query import labels as label_queries
from horizonlens.storage.access import Permission

SHOWN = ["step", "label", "category", "note", "agent", "author", "source", "created_at", "version"]
SUGGESTED_CATEGORIES = ["note", "error", "decisive", "failure", "root_cause", "recovery", "good"]
FLASH = "labels_flash"
PAGE = 200  # labels a page ships per table or list, however many a run has


def render(store: CorpusStore, trajectory_id: str, step: int, n_steps: int) -> None:
    st.markdown("### Labels")
    if store.label_problems:
        st.warning("Some label files could not be read: " + ui.md("; ".join(store.label_problems[:3])))
    flash = st.session_state.pop(FLASH, None)
    if flash:
        st.success(flash)
    counts = state.cached(label_queries.label_counts, store, trajectory_id, n_steps)
    if counts["past_end"]:
        st.warning(f"{counts['past_end']:,} label(s) of this run point past the end of this run (it has {n_steps:,} "
                   "steps): they were written on a longer version of it. Edit or delete them below.")
    here = state.cached(label_queries.labels_of, store, trajectory_id, step=step, limit=PAGE).to_pandas()
    if here.empty:
        st.caption(f"No label on this run or on step {step} yet.")
    else:
        st.dataframe(here[SHOWN], hide_index=True, key="labels_table",
                     column_config={"step": st.column_config.NumberColumn("step", help="empty: the whole run")})
        if len(here) == PAGE:
            st.caption(f"The first {PAGE} labels of this run and step {step}; the rest are in `horizonlens annotate "
                       "export` and the SQL page's `annotations` view.")
    elsewhere = [s for s in counts["steps"] if s != step]
    if elsewhere:
        st.caption(f"Labels on other steps of this run: {', '.join(map(str, elsewhere[:40]))}"
                   + (" …" if len(elsewhere) > 40 else ""))
    # only what the session's role may do is offered (the core refuses the rest: storage/access.py)
    tabs = {name: allowed for name, allowed in (("Add a label", auth.can(Permission.LABEL)),
                                               ("Edit or delete", auth.can(Permission.LABEL)),
                                               ("Export all labels", auth.can(Permission.EXPORT))) if allowed}
    if not tabs:
        st.caption("Adding, editing and exporting labels needs an editor's account on this server.")
        return
    # Every tab is drawn (not lazy): the forms' unsaved text lives in the browser and would be lost on a switch.
    # What was costly on each Next, the export's files of every label, is built only when clicked (`_export`).
    shown = dict(zip(tabs, st.tabs(list(tabs)), strict=True))
    if "Add a label" in shown:
        with shown["Add a label"]:
            _add_form(store, trajectory_id, step)
        with shown["Edit or delete"]:
            _edit_form(store, trajectory_id, counts["total"], n_steps)
    if "Export all labels" in shown:
        with shown["Export all labels"]:
            _export(store)


def _categories(store: CorpusStore) -> list[str]:
    used = state.cached(label_queries.label_categories, store).column("category").to_pylist()
    return list(dict.fromkeys([*SUGGESTED_CATEGORIES, *(c for c in used if c)]))


def _write(action: Any, done: str) -> None:
    """Run one write; on success show `done` after the rerun, on a user error show why (nothing was written)."""
    try:
        action()
    except HorizonLensError as exc:
        st.error(f"Not saved: {ui.md(exc)}")
        return
    st.session_state[FLASH] = done
    st.rerun()


def _add_form(store: CorpusStore, trajectory_id: str, step: int) -> None:
    with st.form(key="labels_add", clear_on_submit=True):
        scope = st.radio("On", [f"step {step}", "the whole run"], horizontal=True, key="labels_add_scope")
        c = st.columns([2, 1])
        text = c[0].text_input("Label", key="labels_add_label", max_chars=label_store.MAX_LEN["label"],
                               placeholder="e.g. wrong refund amount")
        category = c[1].selectbox("Category", _categories(store), key="labels_add_category", accept_new_options=True,
                                  help="What kind of label: pick one or type a new one.")
        note = st.text_area("Note (optional)", key="labels_add_note", max_chars=label_store.MAX_LEN["note"], height=80)
        who = st.columns(2)
        agent = who[0].text_input("Agent it names (optional)", key="labels_add_agent",
                                max_chars=label_store.MAX_LEN["agent"])
        author = _author(who[1], "labels_add_author")
        if st.form_submit_button("Add label", type="primary"):
            label = Label(trajectory_id=trajectory_id, label=text, category=category or "note",
                          step=None if scope == "the whole run" else step, note=note or None, agent=agent or None)
            _write(lambda: label_store.add_labels(store.root, [label], author=author, skip_existing=False),
                   f"Label added to {'the run' if label.step is None else f'step {step}'}.")


def _author(column: Any, key: str | None) -> str | None:
    """The author field: free text for a local user; a signed-in user writes as themselves (the core insists)."""
    if not auth.principal().anywhere:
        column.caption(f"Saved as **{ui.md(label_store.default_author())}**")
        return None
    return column.text_input("Author", value=label_store.default_author(), key=key,
                             max_chars=label_store.MAX_LEN["author"])


def _describe(row: dict[str, Any]) -> str:
    where = "run" if pd.isna(row["step"]) else f"step {int(row['step'])}"
    text = str(row["label"])
    return f"{where} · {text[:60]}{'…' if len(text) > 60 else ''} ({row['category']}, v{row['version']})"


def _edit_form(store: CorpusStore, trajectory_id: str, total: int, n_steps: int) -> None:
    if not total:
        st.caption("This run has no labels to edit.")
        return
    page = 1
    if total > PAGE:
        pages = -(-total // PAGE)
        page = int(st.number_input(f"Page of labels (of {pages:,})", 1, pages, 1, key="labels_edit_page"))
        st.caption(f"This run has {total:,} labels, {PAGE} to a page.")
    labels = state.cached(label_queries.labels_of, store, trajectory_id, offset=(page - 1) * PAGE,
                          limit=PAGE).to_pandas()
    rows = {str(r["annotation_id"]): {str(k): v for k, v in r.items()} for r in labels.to_dict(orient="records")}
    chosen = st.selectbox("Label", list(rows), format_func=lambda a: _describe(rows[a]), key="labels_edit_pick")
    row = rows[chosen]
    with st.form(key=f"labels_edit_{chosen}_{row['version']}"):
        c = st.columns([2, 1, 1])
        text = c[0].text_input("Label", value=row["label"], max_chars=label_store.MAX_LEN["label"])
        cats = _categories(store)
        category = c[1].selectbox("Category", cats, index=cats.index(row["category"]) if row["category"] in cats else 0,
                                  accept_new_options=True)
        current = None if pd.isna(row["step"]) or int(row["step"]) >= n_steps else int(row["step"])
        step_value = c[2].number_input("Step (empty: whole run)", min_value=0, max_value=max(0, n_steps - 1), step=1,
                                       value=current)
        if current is None and not pd.isna(row["step"]):
            st.caption(f"Its step {int(row['step'])} is past the end of this run: pick one of its steps, or leave "
                       "the step empty to put the label on the whole run.")
        note = st.text_area("Note", value=row["note"] or "", max_chars=label_store.MAX_LEN["note"], height=80)
        who = st.columns(2)
        agent = who[0].text_input("Agent", value=row["agent"] or "", max_chars=label_store.MAX_LEN["agent"])
        author = _author(who[1], None)
        save, delete = st.columns([1, 4])
        if save.form_submit_button("Save as new version", type="primary"):
            label = label_store.as_label(row, label=text, category=category or "note", note=note or None,
                                         agent=agent or None, step=None if step_value is None else int(step_value))
            _write(lambda: label_store.edit_label(store.root, chosen, label, author=author),
                   f"Saved version {row['version'] + 1} of the label.")
        if delete.form_submit_button("Delete label"):
            _write(lambda: label_store.delete_label(store.root, chosen, author=author),
                   "Label deleted (its history is kept).")
    box = st.expander("History of this label", key="labels_history_open", on_change="rerun")
    if box.open:  # closed, its table would make the first load fetch the browser's table component
        history = state.cached(label_queries.label_history, store, chosen).to_pandas()
        box.dataframe(history[["version", "deleted", *[c for c in SHOWN if c != "version"]]], hide_index=True)


def _export(store: CorpusStore) -> None:
    history = st.checkbox("Every version (edits and deletions included)", key="labels_export_history")
    table = state.cached(label_queries.all_labels, store, history)
    st.caption(f"{table.num_rows:,} {'label versions' if history else 'current labels'} in this corpus. "
               "The same as `horizonlens annotate export`.")
    name = "label-history" if history else "labels"
    c = st.columns([1, 1, 4])
    # deferred: the files are built when clicked, not on every run of the step panel
    c[0].download_button("CSV", lambda: label_store.export_bytes(table, "csv"), file_name=f"{name}.csv",
                         mime="text/csv", key="labels_export_csv", on_click="ignore")
    c[1].download_button("Parquet", lambda: label_store.export_bytes(table, "parquet"), file_name=f"{name}.parquet",
                         mime="application/octet-stream", key="labels_export_parquet", on_click="ignore")
