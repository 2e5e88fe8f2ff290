"""Annotations: labels that people and label files put on runs and steps, stored beside the corpus.

`annotations/` is a dataset with one append-only table, `labels`: a row is one *version* of one annotation
(docs/annotations.md has the columns). An edit appends a new version and a delete appends a tombstone, so the
history stays readable (view `annotation_history`); the view `annotations` shows the current labels. Every write
is one transaction under the dataset's lock, so two writers never lose each other's rows, and versions are
numbered under that lock. On a team server a write is recorded as the signed-in user,
whatever author it names.
"""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from horizonlens.corpus.files import UPGRADE
from horizonlens.errors import CorpusError, LabelError
from horizonlens.labels.bounds import check_steps
from horizonlens.storage import access
from horizonlens.storage.access import Permission, require
from horizonlens.storage.dataset import Dataset, Snapshot, Transaction
from horizonlens.storage.location import CorpusPath, as_location, read_table
from horizonlens.storage.manifest import ManifestRules

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
# Columns of the current-labels view and of an export (the tombstone flag is not one of them).
COLUMNS = tuple(n for n in ANNOTATIONS.names if n != "deleted")
# The content of a label: two current labels with equal content are the same label (re-imports add nothing).
CONTENT = ("trajectory_id", "step", "label", "category", "note", "agent", "source")

# Limits on untrusted text: generous for people, firm against a pasted megabyte.
MAX_LEN = {"trajectory_id": 1_000, "label": 500, "category": 100, "note": 20_000, "agent": 200, "author": 200,
           "source": 200}
MAX_STEP = 2**31 - 1


@dataclass(frozen=True, slots=True)  # a label file can hold millions: no per-label __dict__
class Label:
    """A label as a person or a label file states it, before it is stored."""

    trajectory_id: str
    label: str
    category: str = "note"
    step: int | None = None  # None: the whole run
    note: str | None = None
    agent: str | None = None
    source: str = "manual"


LABEL_RULES = ManifestRules(kind="annotations", upgrade=UPGRADE)


def annotations_dataset(root: CorpusPath | str) -> Dataset:
    """The annotations of a corpus, a dataset of its own (table `labels`)."""
    return Dataset(as_location(root) / ANNOTATIONS_DIR, (LABELS_TABLE,), rules=LABEL_RULES, write=Permission.LABEL)


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
    if not isinstance(value, str):  # a number, NaN or an object is refused, never written down as its repr
        raise LabelError(f"the {field.replace('_', ' ')} is {type(value).__name__} {str(value)[:40]!r}, not text")
    limit = MAX_LEN[field]
    if len(value) > limit:
        raise LabelError(f"the {field.replace('_', ' ')} is {len(value):,} characters long; at most {limit:,} fit")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: kept readable instead of refused
        value = value.encode("utf-8", "replace").decode("utf-8")
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
            tables.append(read_table(path).select(list(ANNOTATIONS.names)).cast(ANNOTATIONS))
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


class LabelWriter:
    """New labels added batch by batch inside one transaction, published together by `commit()` or not at all.

    A label file of millions of labels is written a batch at a time (one file each), so neither the labels
    nor their rows are all held at once; a writer left without `commit()` publishes nothing. `skip_existing`:
    a label whose content equals a current label's (or one added before in this writer) is not stored again.
    """

    def __init__(self, root: CorpusPath | str, author: str | None = None, skip_existing: bool = True,
                 timeout_s: float | None = None):
        self.root = root
        self.author = _author(author)
        self.skip_existing = skip_existing
        self.timeout_s = timeout_s
        self.ids: list[str] = []  # annotation ids of the labels added
        self.skipped = 0  # labels already present
        self._cm: Any = None
        self._txn: Transaction | None = None
        self._present: set[tuple[Any, ...]] = set()
        self._history = ANNOTATIONS.empty_table()

    def __enter__(self) -> LabelWriter:
        self._cm = annotations_dataset(self.root).transaction(create={"kind": "annotations"}, timeout_s=self.timeout_s)
        self._txn = self._cm.__enter__()
        self._history = read_history(self._txn.snapshot)
        if self.skip_existing:
            self._present = {_key(r) for r in current(self._history).select(list(CONTENT)).to_pylist()}
        return self

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)

    def add(self, labels: Sequence[Label]) -> None:
        """Check a batch (text, and steps against their runs) and write what is new as one unpublished file."""
        assert self._txn is not None, "use LabelWriter as a context manager"
        cleaned = [clean(label) for label in labels]
        check_steps(self.root, cleaned)
        kept: list[Label] = []
        for label in cleaned:
            key = tuple(getattr(label, c) for c in CONTENT)
            if self.skip_existing and key in self._present:
                self.skipped += 1
                continue
            self._present.add(key)
            kept.append(label)
        if not kept:
            return
        ids = [uuid.uuid4().hex for _ in kept]
        n = len(kept)
        # column by column: a row dict per label would outweigh the labels themselves
        columns: dict[str, Any] = {c: [getattr(x, c) for x in kept] for c in CONTENT}
        columns.update(annotation_id=ids, version=[1] * n, author=[self.author] * n, created_at=[_now()] * n,
                       deleted=[False] * n)
        self._txn.write(LABELS_TABLE, pa.table({c: columns[c] for c in ANNOTATIONS.names}, schema=ANNOTATIONS))
        self.ids += ids

    def commit(self) -> None:
        """Publish every batch; past MAX_FILES files the labels stored before are folded into one file."""
        assert self._txn is not None, "use LabelWriter as a context manager"
        if not self.ids:
            return
        files = self._txn.snapshot.table(LABELS_TABLE)
        if len(files) + len(self._txn.added) > MAX_FILES and files:
            self._txn.write(LABELS_TABLE, self._history)
            self._txn.remove(files)
        self._txn.commit()


def add_labels(root: CorpusPath | str, labels: Sequence[Label], author: str | None = None,
               skip_existing: bool = True, timeout_s: float | None = None) -> tuple[list[str], int]:
    """Store new labels in one transaction; returns (their annotation ids, how many were already present).

    `skip_existing`: a label whose content equals a current label's is not stored again, so importing the
    same file twice adds nothing.
    """
    require(Permission.LABEL)  # who may label is decided before anything about the labels is read
    cleaned = [clean(label) for label in labels]  # refused before the dataset is touched
    check_steps(root, cleaned)
    with LabelWriter(root, author, skip_existing, timeout_s) as writer:
        writer.add(cleaned)
        writer.commit()
    return writer.ids, writer.skipped


def _latest(history: pa.Table, annotation_id: str) -> dict[str, Any]:
    mine = history.filter(pc.equal(history["annotation_id"], annotation_id))
    if mine.num_rows == 0:
        raise LabelError(f"no annotation with id {annotation_id!r}")
    row = max(mine.to_pylist(), key=lambda r: r["version"])
    if row["deleted"]:
        raise LabelError(f"annotation {annotation_id!r} was deleted")
    return row


def _new_version(root: CorpusPath | str, annotation_id: str, author: str | None, timeout_s: float | None,
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


def edit_label(root: CorpusPath | str, annotation_id: str, label: Label, author: str | None = None,
               timeout_s: float | None = None) -> int:
    """Store an edited label as the next version of its annotation; returns the new version number."""
    require(Permission.LABEL)
    change = clean(label)
    check_steps(root, [change])
    return _new_version(root, annotation_id, author, timeout_s, change)


def delete_label(root: CorpusPath | str, annotation_id: str, author: str | None = None,
                 timeout_s: float | None = None) -> int:
    """Delete a label by appending a tombstone version (its history stays); returns that version number."""
    return _new_version(root, annotation_id, author, timeout_s, None)


def remove_past_end(root: CorpusPath | str, lengths: dict[str, int], author: str) -> tuple[int, int]:
    """Tombstone the current labels on steps at or past `lengths[run]` (a run replaced by a shorter one).

    Their versions stay in the history. Returns (labels removed, runs they were on).
    """
    dataset = annotations_dataset(root)
    if not lengths or not dataset.exists():
        return 0, 0
    with dataset.transaction() as txn:
        history = read_history(txn.snapshot)
        live = current(history)
        runs = pa.array(sorted(lengths))
        mine = live.filter(pc.fill_null(pc.is_in(live["trajectory_id"], value_set=runs), False)).to_pylist()
        past = [r for r in mine if r["step"] is not None and r["step"] >= lengths[r["trajectory_id"]]]
        if not past:
            return 0, 0
        created = _now()  # the current version of each, once more, as a tombstone
        rows = [dict(row, version=row["version"] + 1, author=author, created_at=created, deleted=True)
                for row in past]
        _commit(txn, rows, history)
    return len(rows), len({r["trajectory_id"] for r in past})


def as_label(row: dict[str, Any], **changes: Any) -> Label:
    """A stored label row (from `annotations`) as a Label, with fields changed (to edit it)."""
    base = Label(trajectory_id=row["trajectory_id"], label=row["label"], category=row["category"] or "note",
                 step=row["step"], note=row["note"], agent=row["agent"], source=row["source"] or "manual")
    return replace(base, **changes)


# --- views ---------------------------------------------------------------------------------------
VIEWS = {HISTORY_VIEW: "every version of every label, tombstones included (docs/annotations.md)",
         CURRENT_VIEW: "the current labels: the latest version of each label that is not a tombstone"}


def current_view_sql() -> str:
    """The `annotations` view over `annotation_history`: latest version per annotation, tombstones left out."""
    return (f"SELECT {', '.join(COLUMNS)} FROM {HISTORY_VIEW} "
            "QUALIFY row_number() OVER (PARTITION BY annotation_id ORDER BY version DESC, created_at DESC) = 1 "
            "AND NOT coalesce(deleted, false)")


def export_bytes(table: pa.Table, fmt: str) -> bytes:
    """A labels table as the bytes of a CSV or Parquet file (the app's downloads and the CLI share this).

    CSV cells that a spreadsheet would run as a formula are neutralised (storage.csv_cells). Labels leaving
    the server are an export: the principal acting needs the `export` permission.
    """
    import io

    from horizonlens.storage.csv_cells import csv_bytes

    require(Permission.EXPORT)

    if fmt == "csv":
        return csv_bytes(table)
    if fmt != "parquet":
        raise LabelError(f"cannot export to {fmt!r}; choose csv or parquet")
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()
