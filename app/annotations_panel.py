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
from horizonlens.labels import annotations
from horizonlens.labels.annotations import Label
from horizonlens.query import CorpusStore
from horizonlens.query import labels as label_queries
from horizonlens.storage.access import Permission

SHOWN = ["step", "label", "category", "note", "agent", "author", "source", "created_at", "version"]
SUGGESTED_CATEGORIES = ["note", "error", "decisive", "failure", "root_cause", "recovery", "good"]
FLASH = "labels_flash"


def render(store: CorpusStore, trajectory_id: str, step: int) -> None:
    st.markdown("### Labels")
    if store.label_problems:
        st.warning("Some label files could not be read: " + ui.md("; ".join(store.label_problems[:3])))
    flash = st.session_state.pop(FLASH, None)
    if flash:
        st.success(flash)
    labels = state.cached(label_queries.labels_of, store, trajectory_id).to_pandas()
    here = labels[labels["step"].isna() | (labels["step"] == step)]
    if here.empty:
        st.caption(f"No label on this run or on step {step} yet.")
    else:
        st.dataframe(here[SHOWN], hide_index=True, key="labels_table",
                     column_config={"step": st.column_config.NumberColumn("step", help="empty: the whole run")})
    elsewhere = sorted({int(s) for s in labels["step"].dropna()} - {step})
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
    shown = dict(zip(tabs, st.tabs(list(tabs)), strict=True))
    if "Add a label" in shown:
        with shown["Add a label"]:
            _add_form(store, trajectory_id, step)
        with shown["Edit or delete"]:
            _edit_form(store, trajectory_id, labels)
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
        text = c[0].text_input("Label", key="labels_add_label", max_chars=annotations.MAX_LEN["label"],
                               placeholder="e.g. wrong refund amount")
        category = c[1].selectbox("Category", _categories(store), key="labels_add_category", accept_new_options=True,
                                  help="What kind of label: pick one or type a new one.")
        note = st.text_area("Note (optional)", key="labels_add_note", max_chars=annotations.MAX_LEN["note"], height=80)
        c = st.columns(2)
        agent = c[0].text_input("Agent it names (optional)", key="labels_add_agent",
                                max_chars=annotations.MAX_LEN["agent"])
        author = _author(c[1], "labels_add_author")
        if st.form_submit_button("Add label", type="primary"):
            label = Label(trajectory_id=trajectory_id, label=text, category=category or "note",
                          step=None if scope == "the whole run" else step, note=note or None, agent=agent or None)
            _write(lambda: annotations.add_labels(store.root, [label], author=author, skip_existing=False),
                   f"Label added to {'the run' if label.step is None else f'step {step}'}.")


def _author(column: Any, key: str | None) -> str | None:
    """The author field: free text for a local user; a signed-in user writes as themselves (the core insists)."""
    if not auth.principal().anywhere:
        column.caption(f"Saved as **{ui.md(annotations.default_author())}**")
        return None
    return column.text_input("Author", value=annotations.default_author(), key=key,
                             max_chars=annotations.MAX_LEN["author"])


def _describe(row: dict[str, Any]) -> str:
    where = "run" if pd.isna(row["step"]) else f"step {int(row['step'])}"
    text = str(row["label"])
    return f"{where} · {text[:60]}{'…' if len(text) > 60 else ''} ({row['category']}, v{row['version']})"


def _edit_form(store: CorpusStore, trajectory_id: str, labels: pd.DataFrame) -> None:
    if labels.empty:
        st.caption("This run has no labels to edit.")
        return
    rows = {r["annotation_id"]: r for r in labels.to_dict(orient="records")}
    chosen = st.selectbox("Label", list(rows), format_func=lambda a: _describe(rows[a]), key="labels_edit_pick")
    row = rows[chosen]
    with st.form(key=f"labels_edit_{chosen}_{row['version']}"):
        c = st.columns([2, 1, 1])
        text = c[0].text_input("Label", value=row["label"], max_chars=annotations.MAX_LEN["label"])
        cats = _categories(store)
        category = c[1].selectbox("Category", cats, index=cats.index(row["category"]) if row["category"] in cats else 0,
                                  accept_new_options=True)
        step_value = c[2].number_input("Step (empty: whole run)", min_value=0, step=1,
                                       value=None if pd.isna(row["step"]) else int(row["step"]))
        note = st.text_area("Note", value=row["note"] or "", max_chars=annotations.MAX_LEN["note"], height=80)
        c = st.columns(2)
        agent = c[0].text_input("Agent", value=row["agent"] or "", max_chars=annotations.MAX_LEN["agent"])
        author = _author(c[1], None)
        save, delete = st.columns([1, 4])
        if save.form_submit_button("Save as new version", type="primary"):
            label = annotations.as_label(row, label=text, category=category or "note", note=note or None,
                                         agent=agent or None, step=None if step_value is None else int(step_value))
            _write(lambda: annotations.edit_label(store.root, chosen, label, author=author),
                   f"Saved version {row['version'] + 1} of the label.")
        if delete.form_submit_button("Delete label"):
            _write(lambda: annotations.delete_label(store.root, chosen, author=author),
                   "Label deleted (its history is kept).")
    with st.expander("History of this label"):
        history = state.cached(label_queries.label_history, store, chosen).to_pandas()
        st.dataframe(history[["version", "deleted", *[c for c in SHOWN if c != "version"]]], hide_index=True)


def _export(store: CorpusStore) -> None:
    history = st.checkbox("Every version (edits and deletions included)", key="labels_export_history")
    table = state.cached(label_queries.all_labels, store, history)
    st.caption(f"{table.num_rows:,} {'label versions' if history else 'current labels'} in this corpus. "
               "The same as `horizonlens annotate export`.")
    name = "label-history" if history else "labels"
    c = st.columns([1, 1, 4])
    c[0].download_button("CSV", annotations.export_bytes(table, "csv"), file_name=f"{name}.csv", mime="text/csv",
                         key="labels_export_csv")
    c[1].download_button("Parquet", annotations.export_bytes(table, "parquet"), file_name=f"{name}.parquet",
                         mime="application/octet-stream", key="labels_export_parquet")
