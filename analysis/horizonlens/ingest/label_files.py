"""Label files in: failure-attribution ground truth (Who&When, AgentRx) and label tables, onto corpus steps.

`horizonlens annotate import FILE --into CORPUS --format NAME` reads a label file, matches each of its
records to a trajectory that the corpus already holds (imported by `horizonlens import`), maps the
source's step numbering onto the corpus's steps, and stores every matched label in one transaction. Ids
without a trajectory are reported; with `strict`, one unmatched id or malformed record stores nothing.

Each source's label reader lives with the format that imports its runs and owns their ids
(docs/annotations.md has worked examples of the step numbering):

- **who-and-when** (`formats/who_and_when.py`): `mistake_step` is a 0-based index into the log's
  `history`, which that importer makes steps 1.. (step 0 is the question);
- **agentrx** (`formats/openai_chat.py`): `step_number` counts the messages of a τ-bench run from 1, mapped
  onto the steps the chat importer made of them;
- **table** (here): CSV, JSON lines or Parquet with columns trajectory_id and label, and optionally step
  (a corpus step), category, note, agent and source: the format `horizonlens annotate export` writes.

Files are read record by record (JSON through the importers' bounded reader, CSV in blocks, Parquet in
batches), so memory holds the labels, not the file. A record that is malformed, names a step outside its
run or holds a value that is not text where text belongs is reported, and the others still import.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from horizonlens.errors import LabelError
from horizonlens.ingest.formats import openai_chat, who_and_when
from horizonlens.ingest.label_records import (
    MAX_PROBLEMS_PER_FILE,
    LabelImportReport,
    Pending,
    checked,
    located,
    step_counts,
    step_number,
    text,
)
from horizonlens.ingest.readers import Problem, iter_records
from horizonlens.labels.annotations import Label, LabelWriter
from horizonlens.query.store import CorpusStore, open_store
from horizonlens.storage.csv_cells import restore

Reader = Callable[[Path, str | None], Iterator[Pending | str]]
Resolver = Callable[[CorpusStore, list[Pending], LabelImportReport], list[Label]]
LABEL_FORMATS = {
    "who-and-when": "Who&When logs: mistake_step, mistake_agent, mistake_reason of each file",
    "agentrx": "AgentRx ground truth: a JSON list of {trajectory_id, failures, root_cause, failure_summary}",
    "table": "CSV, JSON lines or Parquet with trajectory_id, label and optional step, category, note, agent, source",
}
MAX_FILE_BYTES = 512 * 2**20
FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
TABLE_COLUMNS = ("trajectory_id", "step", "label", "category", "note", "agent", "source")
CSV_FIELD_MAX = 1 << 20  # characters of one CSV cell (a note may hold 20,000); a longer one ends the file's reading
PARQUET_BATCH = 10_000  # rows of a Parquet label table read at a time
BATCH = 50_000  # records matched and written at a time


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _files(paths: Iterable[Path | str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix in FILE_SUFFIXES and _regular(f))
        elif _regular(p):
            out.append(p)
        elif p.exists() or p.is_symlink():
            raise LabelError(f"{p}: not a regular file (a FIFO, device or broken link)")
        else:
            raise LabelError(f"{p}: no such file or directory")
    if not out:
        raise LabelError("no label files found (expected .json, .jsonl, .csv or .parquet)")
    return out


# --- tables --------------------------------------------------------------------------------------
def _table_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]] | str]:
    """(where, row) of each row of a label table, or a problem: CSV row by row, Parquet in batches, JSON by record."""
    if path.suffix == ".csv":
        yield from _csv_rows(path)
    elif path.suffix == ".parquet":
        yield from _parquet_rows(path)
    else:
        for raw in iter_records(path):
            if isinstance(raw, Problem):
                yield f"{located(path, raw.where)}: {raw.reason}"
            elif isinstance(raw.value, dict):
                yield located(path, raw.where), raw.value
            else:
                yield f"{located(path, raw.where)}: a label table's record is an object with trajectory_id and label"


def _missing_columns(path: Path, names: Iterable[str]) -> str | None:
    missing = [c for c in ("trajectory_id", "label") if c not in names]
    return (f"{path}: a label table needs the columns trajectory_id and label (missing {', '.join(missing)})"
            if missing else None)


def _csv_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]] | str]:
    """A CSV's rows as text, one at a time (Python's csv module: Arrow's streaming reader held the file)."""
    import csv

    csv.field_size_limit(CSV_FIELD_MAX)
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if header is None:
                yield f"{path}: empty file"
                return
            missing = _missing_columns(path, header)
            if missing:
                yield missing
                return
            columns = [(i, name) for i, name in enumerate(header) if name in TABLE_COLUMNS]
            for n, cells in enumerate(reader, 1):
                if len(cells) != len(header):
                    yield f"{path} row {n}: {len(header)} columns expected, {len(cells)} found"
                    continue
                # every cell is text (ids like "007" keep their zeros; a step is parsed per row); cells an export
                # neutralised against spreadsheet formulas are given their text again; empty cells are null
                yield f"{path} row {n}", {name: restore(cells[i]) if cells[i] != "" else None for i, name in columns}
        except csv.Error as exc:
            yield f"{path} row {reader.line_num}: not readable as CSV ({exc}); the rest of the file is skipped"


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]] | str]:
    """A Parquet table's rows, a batch at a time (a row group is decompressed at a time)."""
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as pf:
            missing = _missing_columns(path, pf.schema_arrow.names)
            if missing:
                yield missing
                return
            columns = [c for c in TABLE_COLUMNS if c in pf.schema_arrow.names]
            n = 0
            for batch in pf.iter_batches(batch_size=PARQUET_BATCH, columns=columns):
                for row in batch.to_pylist():
                    n += 1
                    yield f"{path} row {n}", row
    except (pa.ArrowException, OSError) as exc:
        yield f"{path}: not a readable Parquet label table ({str(exc)[:200]})"


def read_table_labels(path: Path, source: str | None) -> Iterator[Pending | str]:
    """One label per row of a label table; a row that cannot be one is a problem naming its row and field."""
    for item in _table_rows(path):
        if isinstance(item, str):
            yield item
            continue
        where, row = item
        try:
            tid, label = text(row.get("trajectory_id"), "trajectory_id"), text(row.get("label"), "label")
            if tid is None or label is None:
                raise ValueError("needs a trajectory_id and a label")
            step = None if row.get("step") in (None, "") else step_number(row["step"], "step")
            if step is not None and step < 0:
                raise ValueError(f"step {step} is not a step (steps count from 0)")
            # ids, categories, agents and sources repeat across rows: one string each, not one per row
            category = _interned(row.get("category"), "category") or "note"
            yield Pending(where, tid, checked([Label(
                trajectory_id=sys.intern(tid), label=label, category=category, step=step,
                note=text(row.get("note"), "note"), agent=_interned(row.get("agent"), "agent"),
                source=source or _interned(row.get("source"), "source") or "import")]))
        except ValueError as exc:
            yield f"{where}: {exc}"


def _interned(value: Any, what: str) -> str | None:
    found = text(value, what)
    return None if found is None else sys.intern(found)


def resolve_table_labels(store: CorpusStore, pending: list[Pending], report: LabelImportReport) -> list[Label]:
    """Rows whose trajectory the corpus has, on a step inside it."""
    steps = step_counts(store, [p.source_id for p in pending])
    out = []
    for p in pending:
        label = p.labels[0]
        if label.trajectory_id not in steps:
            report.unmatched.append(f"{label.trajectory_id} (no such trajectory)")
        elif label.step is not None and label.step >= steps[label.trajectory_id]:
            report.problems.append(f"{p.where}: step {label.step} is beyond the {steps[label.trajectory_id]} steps "
                                   f"of {label.trajectory_id}")
        else:
            out.append(label)  # checked as it was read (its run's id is its own)
    return out


# --- the formats -----------------------------------------------------------------------------------
READERS: dict[str, tuple[Reader, Resolver]] = {
    "who-and-when": (lambda p, s: who_and_when.read_labels(p, s or "who-and-when"), who_and_when.resolve_labels),
    "agentrx": (lambda p, s: openai_chat.read_agentrx_labels(p, s or "agentrx"), openai_chat.resolve_agentrx_labels),
    "table": (read_table_labels, resolve_table_labels),
}


def label_batches(store: CorpusStore, paths: Iterable[Path | str], fmt: str, source: str | None,
                  report: LabelImportReport, batch: int | None = None) -> Iterator[list[Label]]:
    """The matched labels of label files on corpus steps, `batch` records (BATCH) at a time; problems go to `report`."""
    batch = batch or BATCH
    if fmt not in READERS:
        raise LabelError(f"unknown label format {fmt!r}; choose one of {', '.join(LABEL_FORMATS)}")
    read, resolve = READERS[fmt]
    pending: list[Pending] = []

    def resolved() -> list[Label]:
        labels = resolve(store, pending, report) if pending else []
        pending.clear()
        report.labels += len(labels)
        report.trajectories.update(label.trajectory_id for label in labels)
        return labels

    for path in _files(paths):
        report.files += 1
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            report.problems.append(f"{path}: {size / 2**20:,.0f} MB; a label file may be at most "
                                   f"{MAX_FILE_BYTES / 2**20:,.0f} MB")
            continue
        problems = 0
        for item in read(path, source):
            report.records += 1
            if isinstance(item, Pending):
                pending.append(item)
                if len(pending) >= batch:
                    yield resolved()
                continue
            report.problems.append(item)
            problems += 1
            if problems >= MAX_PROBLEMS_PER_FILE:
                report.problems.append(f"{path}: more than {MAX_PROBLEMS_PER_FILE} problems; stopped reading it")
                break
    yield resolved()


def read_label_files(store: CorpusStore, paths: Iterable[Path | str], fmt: str, source: str | None = None
                     ) -> tuple[list[Label], LabelImportReport]:
    """Read label files and match them to the corpus; returns the matched labels (on corpus steps) and the report."""
    report = LabelImportReport()
    labels = [label for part in label_batches(store, paths, fmt, source, report) for label in part]
    return labels, report


def import_label_files(paths: Iterable[Path | str], corpus: Path | str, fmt: str, source: str | None = None,
                       author: str | None = None, strict: bool = False) -> LabelImportReport:
    """Import label files into a corpus's annotations: all matched labels in one transaction, or none.

    Labels are matched and written a batch at a time inside that transaction (the labels' lock is held while
    the files are read). Unmatched ids and malformed records are reported; with `strict` any of them stores
    nothing.
    """
    report = LabelImportReport()
    store = open_store(corpus)
    try:
        with LabelWriter(corpus, author=author) as writer:
            for labels in label_batches(store, paths, fmt, source, report):
                writer.add(labels)
            if strict and (report.unmatched or report.problems):
                shown = [*report.unmatched[:10], *report.problems[:10]]
                raise LabelError(f"nothing imported (--strict): {len(report.unmatched)} unmatched, "
                                 f"{len(report.problems)} problem(s): " + "; ".join(shown))
            if not report.labels:
                shown = [*report.unmatched[:5], *report.problems[:5]]
                raise LabelError("nothing to import: no record matched a trajectory of this corpus"
                                 + (": " + "; ".join(shown) if shown else ""))
            writer.commit()
    finally:
        store.close()
    report.added, report.already_present = len(writer.ids), writer.skipped
    return report
