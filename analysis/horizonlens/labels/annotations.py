"""Annotations: labels that people and label files put on runs and steps, stored beside the corpus.

`corpus/annotations/` is a dataset (corpus/dataset.py) with one append-only table, `labels`. A row is one
*version* of one annotation:

    annotation_id  stable id of the annotation across its versions
    version        1 for a new label, +1 for each edit; the highest version is the current one
    trajectory_id  the run it labels
    step           the step it labels (null: the whole run)
    label          the label itself, e.g. "wrong refund amount" (untrusted text, shown as text)
    category       what kind of label: note, decisive, failure, root_cause, ... (free text)
    note           free text
    agent          the agent the label names, when it names one (Who&When's mistake_agent)
    author         who wrote it: on a team server the signed-in user (always), else as given (default: the OS user)
    created_at     when this version was written (UTC)
    source         where it came from: manual, who-and-when, agentrx, a judge's name, ...
    deleted        a tombstone: the annotation was deleted in this version

Nothing is ever rewritten in place: an edit appends a new version, a delete appends a tombstone, so the
history stays readable (view `annotation_history`). The view `annotations` shows the current labels: the
latest version of each annotation that is not a tombstone. Every write is one transaction under the
dataset's lock, so two writers never lose each other's rows, and versions are numbered under that lock.
"""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from horizonlens.errors import CorpusError, LabelError
from horizonlens.storage import access
from horizonlens.storage.access import Permission, require
from horizonlens.storage.dataset import Dataset, Snapshot, Transaction
from horizonlens.storage.location import CorpusPath, as_location

ANNOTATIONS_DIR = "annotations"
LABELS_TABLE = "labels"
HISTORY_VIEW = "annotation_history"
CURRENT_VIEW = "annotations"
# Small files accumulate (one per save); past this many the next write folds them into one file.
MAX_FILES = 64

ANNOTATIONS = pa.schema(
    [
        pa.field("annotation_id", pa.string(), nullable=False),
        pa.field("version", pa.int32(), nullable=False),
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("step", pa.int32()),
        pa.field("label", pa.string()),
        pa.field("category", pa.string()),
        pa.field("note", pa.string()),
        pa.field("agent", pa.string()),
        pa.field("author", pa.string()),
        pa.field("created_at", pa.timestamp("ms", tz="UTC")),
        pa.field("source", pa.string()),
        pa.field("deleted", pa.bool_()),
    ]
)
# The same columns as DuckDB types, for the empty views of a corpus without annotations.
_DUCKDB_TYPES = {"annotation_id": "VARCHAR", "version": "INTEGER", "trajectory_id": "VARCHAR", "step": "INTEGER",
                 "label": "VARCHAR", "category": "VARCHAR", "note": "VARCHAR", "agent": "VARCHAR",
                 "author": "VARCHAR", "created_at": "TIMESTAMPTZ", "source": "VARCHAR", "deleted": "BOOLEAN"}
# Columns of the current-labels view and of an export (the tombstone flag is not one of them).
COLUMNS = tuple(n for n in ANNOTATIONS.names if n != "deleted")
# The content of a label: two current labels with equal content are the same label (re-imports add nothing).
CONTENT = ("trajectory_id", "step", "label", "category", "note", "agent", "source")

# Limits on untrusted text: generous for people, firm against a pasted megabyte.
MAX_LEN = {"trajectory_id": 1_000, "label": 500, "category": 100, "note": 20_000, "agent": 200, "author": 200,
           "source": 200}
MAX_STEP = 2**31 - 1


@dataclass(frozen=True)
class Label:
    """A label as a person or a label file states it, before it is stored."""

    trajectory_id: str
    label: str
    category: str = "note"
    step: int | None = None  # None: the whole run
    note: str | None = None
    agent: str | None = None
    source: str = "manual"


def annotations_dataset(root: CorpusPath | str) -> Dataset:
    """The annotations of a corpus, a dataset of its own (table `labels`)."""
    return Dataset(as_location(root) / ANNOTATIONS_DIR, (LABELS_TABLE,), write=Permission.LABEL)


def _author(given: str | None) -> str:
    """Who a write is recorded as: a signed-in user always as themselves, the owner as given (else the OS user)."""
    who = access.current()
    if not who.anywhere:
        return _text(who.name, "author") or "unknown"
    return _text(given, "author") or default_author()


def default_author() -> str:
    """The author of a label written without one: the signed-in user on a team server, else the OS user."""
    who = access.current()
    if not who.anywhere:
        return who.name
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers) and no LOGNAME/USER
        return "unknown"


def _text(value: Any, field: str, required: bool = False) -> str | None:
    """A label field as clean text within its limit; LabelError names the field otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise LabelError(f"a label needs a {field.replace('_', ' ')}")
        return None
    if not isinstance(value, str):
        value = str(value)
    # text that cannot be stored as UTF-8 (lone surrogates) is kept readable instead of refused
    value = value.encode("utf-8", "replace").decode("utf-8")
    limit = MAX_LEN[field]
    if len(value) > limit:
        raise LabelError(f"the {field.replace('_', ' ')} is {len(value):,} characters long; at most {limit:,} fit")
    return value.strip() if field != "note" else value


def _step(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_STEP:
        raise LabelError(f"a label's step is a step number (0 or more) or empty for the whole run, not {value!r}")
    return int(value)


def clean(label: Label) -> Label:
    """The label with its text checked and trimmed (LabelError for what cannot be stored)."""
    return Label(trajectory_id=_text(label.trajectory_id, "trajectory_id", True) or "",
                 label=_text(label.label, "label", True) or "",
                 category=_text(label.category, "category") or "note",
                 step=_step(label.step), note=_text(label.note, "note"), agent=_text(label.agent, "agent"),
                 source=_text(label.source, "source") or "manual")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=ANNOTATIONS)


def read_history(snapshot: Snapshot) -> pa.Table:
    """Every version of every annotation in a published state (the table the writers check against)."""
    tables = []
    for path in snapshot.paths(LABELS_TABLE):
        try:
            tables.append(pq.read_table(path).select(list(ANNOTATIONS.names)).cast(ANNOTATIONS))
        except (OSError, pa.ArrowException, KeyError) as exc:
            raise CorpusError(f"{path}: not a readable annotations file ({exc})") from exc
    return pa.concat_tables(tables) if tables else ANNOTATIONS.empty_table()


def current(history: pa.Table) -> pa.Table:
    """The current labels of a history table: the latest version of each annotation, tombstones left out."""
    if history.num_rows == 0:
        return history.select(list(COLUMNS))
    order = pc.sort_indices(history, sort_keys=[("annotation_id", "ascending"), ("version", "descending")])
    ordered = history.take(order)
    ids = ordered["annotation_id"].to_pylist()
    keep = [i for i, a in enumerate(ids) if i == 0 or ids[i - 1] != a]
    latest = ordered.take(pa.array(keep, pa.int64()))
    alive = latest.filter(pc.invert(pc.fill_null(latest["deleted"], False)))
    return alive.select(list(COLUMNS))


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[c] for c in CONTENT)


def _commit(txn: Transaction, rows: list[dict[str, Any]], history: pa.Table) -> None:
    """Append `rows` as one new file; past MAX_FILES files, fold everything into one (history kept)."""
    files = txn.snapshot.table(LABELS_TABLE)
    new = _rows_table(rows)
    if len(files) + 1 > MAX_FILES:
        txn.write(LABELS_TABLE, pa.concat_tables([history, new]))
        txn.remove(files)
    else:
        txn.write(LABELS_TABLE, new)
    txn.commit()


def add_labels(root: Path | str, labels: Sequence[Label], author: str | None = None,
               skip_existing: bool = True, timeout_s: float | None = None) -> tuple[list[str], int]:
    """Store new labels in one transaction; returns (their annotation ids, how many were already present).

    `skip_existing`: a label whose content equals a current label's is not stored again, so importing the
    same file twice adds nothing.
    """
    cleaned = [clean(label) for label in labels]
    who = _author(author)
    dataset = annotations_dataset(root)
    with dataset.transaction(create={"kind": "annotations"}, timeout_s=timeout_s) as txn:
        history = read_history(txn.snapshot)
        present = {_key(r) for r in current(history).to_pylist()} if skip_existing else set()
        created = _now()
        rows: list[dict[str, Any]] = []
        ids: list[str] = []
        skipped = 0
        for label in cleaned:
            annotation_id = uuid.uuid4().hex
            row: dict[str, Any] = {"annotation_id": annotation_id, "version": 1, "trajectory_id": label.trajectory_id,
                   "step": label.step, "label": label.label, "category": label.category, "note": label.note,
                   "agent": label.agent, "author": who, "created_at": created, "source": label.source,
                   "deleted": False}
            if _key(row) in present:
                skipped += 1
                continue
            present.add(_key(row))
            rows.append(row)
            ids.append(annotation_id)
        if rows:
            _commit(txn, rows, history)
    return ids, skipped


def _latest(history: pa.Table, annotation_id: str) -> dict[str, Any]:
    mine = history.filter(pc.equal(history["annotation_id"], annotation_id))
    if mine.num_rows == 0:
        raise LabelError(f"no annotation with id {annotation_id!r}")
    row = max(mine.to_pylist(), key=lambda r: r["version"])
    if row["deleted"]:
        raise LabelError(f"annotation {annotation_id!r} was deleted")
    return row


def _new_version(root: Path | str, annotation_id: str, author: str | None, timeout_s: float | None,
                 change: Label | None) -> int:
    """Append the next version of an annotation: `change` (an edit) or a tombstone (None)."""
    who = _author(author)
    dataset = annotations_dataset(root)
    if not dataset.exists():
        raise LabelError(f"no annotation with id {annotation_id!r} (this corpus has no labels)")
    with dataset.transaction(timeout_s=timeout_s) as txn:
        history = read_history(txn.snapshot)
        row = _latest(history, annotation_id)  # read under the lock: versions never collide
        if change is not None:
            if change.trajectory_id != row["trajectory_id"]:
                raise LabelError("an edit cannot move a label to another trajectory; add a new label there")
            row.update(step=change.step, label=change.label, category=change.category, note=change.note,
                       agent=change.agent, source=change.source)
        row.update(version=row["version"] + 1, author=who, created_at=_now(), deleted=change is None)
        _commit(txn, [row], history)
        return int(row["version"])


def edit_label(root: Path | str, annotation_id: str, label: Label, author: str | None = None,
               timeout_s: float | None = None) -> int:
    """Store an edited label as the next version of its annotation; returns the new version number."""
    return _new_version(root, annotation_id, author, timeout_s, clean(label))


def delete_label(root: Path | str, annotation_id: str, author: str | None = None,
                 timeout_s: float | None = None) -> int:
    """Delete a label by appending a tombstone version (its history stays); returns that version number."""
    return _new_version(root, annotation_id, author, timeout_s, None)


def as_label(row: dict[str, Any], **changes: Any) -> Label:
    """A stored label row (from `annotations`) as a Label, with fields changed (to edit it)."""
    base = Label(trajectory_id=row["trajectory_id"], label=row["label"], category=row["category"] or "note",
                 step=row["step"], note=row["note"], agent=row["agent"], source=row["source"] or "manual")
    return replace(base, **changes)


# --- views ---------------------------------------------------------------------------------------
def empty_history_sql() -> str:
    """A SELECT with the history's columns and no rows (the view of a corpus without annotations)."""
    cols = ", ".join(f"CAST(NULL AS {_DUCKDB_TYPES[n]}) AS {n}" for n in ANNOTATIONS.names)
    return f"SELECT {cols} WHERE false"


def current_view_sql() -> str:
    """The `annotations` view over `annotation_history`: latest version per annotation, tombstones left out."""
    return (f"SELECT {', '.join(COLUMNS)} FROM {HISTORY_VIEW} "
            "QUALIFY row_number() OVER (PARTITION BY annotation_id ORDER BY version DESC, created_at DESC) = 1 "
            "AND NOT coalesce(deleted, false)")


def export_bytes(table: pa.Table, fmt: str) -> bytes:
    """A labels table as the bytes of a CSV or Parquet file (the app's downloads and the CLI share this).

    Labels leaving the server are an export: the principal acting needs the `export` permission.
    """
    import io

    require(Permission.EXPORT)
    buf = io.BytesIO()
    if fmt == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, buf)
    elif fmt == "parquet":
        pq.write_table(table, buf)
    else:
        raise LabelError(f"cannot export to {fmt!r}; choose csv or parquet")
    return buf.getvalue()
