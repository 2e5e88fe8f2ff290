"""Label files in: failure-attribution ground truth (Who&When, AgentRx) and label tables, onto corpus steps.

`horizonlens annotate import FILE --into CORPUS --format NAME` reads a label file, matches each of its
records to a trajectory that the corpus already holds (imported by `horizonlens import`), maps the
source's step numbering onto the corpus's steps, and stores every matched label in one transaction. Ids
without a trajectory are reported; with `strict`, one unmatched id or malformed record stores nothing.

How each source's step numbers become corpus steps (docs/annotations.md has worked examples):

- **who-and-when**: `mistake_step` is a 0-based index into the file's `history`. The Who&When importer
  makes step 0 the question and history[i] step i + 1, so the label goes on step `mistake_step + 1`. The
  trajectory is `who-and-when:<folder>:<file stem>`, as the importer names it; its step count must be
  len(history) + 1, or the file is not the one that was imported and is refused.
- **agentrx**: `step_number` counts the messages of the run's `traj` from 1 (AgentRx's `index` field).
  The openai-chat importer makes one step per system, user and assistant message and attaches each tool
  message to the assistant step that made the call (a tool message that answers no known call becomes an
  environment step of its own). Reading the corpus's steps in order therefore gives back the message
  numbers: a step takes the next number, then an agent step takes one more per observation it holds
  (its tool results, which the OpenAI API requires to follow the call). A failure on a tool message thus
  lands on the agent step that made the call. The run is the trajectory whose task_id is
  `tau-bench:<trajectory_id>` (a record's `trial` picks one of several trials) or whose id is the given id.
- **table**: CSV, JSON lines or Parquet with columns trajectory_id and label, and optionally step (a
  corpus step), category, note, agent and source: the format `horizonlens annotate export` writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from horizonlens.errors import LabelError
from horizonlens.labels.annotations import Label, add_labels
from horizonlens.query.labels import known_trajectories
from horizonlens.query.store import CorpusStore, open_store
from horizonlens.storage.csv_cells import restore

LABEL_FORMATS = {
    "who-and-when": "Who&When logs: mistake_step, mistake_agent, mistake_reason of each file",
    "agentrx": "AgentRx ground truth: a JSON list of {trajectory_id, failures, root_cause, failure_summary}",
    "table": "CSV, JSON lines or Parquet with trajectory_id, label and optional step, category, note, agent, source",
}
MAX_FILE_BYTES = 512 * 2**20
FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


@dataclass
class LabelImportReport:
    """What a label import did: labels stored, already present, unmatched ids, malformed records."""

    files: int = 0
    records: int = 0
    labels: int = 0  # labels read from matched records
    added: int = 0
    already_present: int = 0
    trajectories: set[str] = field(default_factory=set)
    unmatched: list[str] = field(default_factory=list)  # "id (why)" for records without a trajectory
    problems: list[str] = field(default_factory=list)  # malformed records, with file and reason

    def summary(self) -> str:
        """One line for the CLI and the app."""
        return (f"{self.added} labels added on {len(self.trajectories)} trajectories ({self.already_present} already "
                f"present) from {self.records} records in {self.files} file(s); {len(self.unmatched)} unmatched, "
                f"{len(self.problems)} problem(s)")


@dataclass
class _Pending:
    """One source record's labels, waiting for their trajectory to be resolved."""

    where: str
    source_id: str  # the id the source gives the run
    labels: list[Label]
    n_steps: int | None = None  # Who&When: the step count the imported trajectory must have
    trial: int | None = None  # AgentRx: which trial of the task, when the record says
    ids: list[str] = field(default_factory=list)  # Who&When: the trajectory ids to try, in order


# --- reading files -------------------------------------------------------------------------------
def _files(paths: Iterable[Path | str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in FILE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise LabelError(f"{p}: no such file or directory")
    if not out:
        raise LabelError("no label files found (expected .json, .jsonl, .csv or .parquet)")
    return out


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise LabelError(f"{path}: {size / 2**20:,.0f} MB; a label file may be at most "
                             f"{MAX_FILE_BYTES / 2**20:,.0f} MB")
        return path.read_bytes()
    except OSError as exc:
        raise LabelError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def _json_values(path: Path) -> list[Any]:
    """The records of a JSON file (a list is its items) or of a JSON-lines file."""
    raw = _read_bytes(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise LabelError(f"{path}: JSON nested too deeply") from exc
    except ValueError:
        values = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                values.append(json.loads(line))
            except (ValueError, RecursionError) as exc:
                raise LabelError(f"{path}: line {n} is not JSON ({str(exc)[:120]})") from exc
        return values
    return value if isinstance(value, list) else [value]


def _int(value: Any, what: str) -> int:
    """A step number from a source (ints, or strings of digits as Who&When writes them)."""
    if isinstance(value, bool):
        raise ValueError(f"{what} is not a step number: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise ValueError(f"{what} is not a step number: {value!r}")


def _str(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# --- Who&When ------------------------------------------------------------------------------------
def who_and_when_ids(path: Path) -> list[str]:
    """The trajectory ids the Who&When importer may have given the run logged in `path`.

    The importer names a run `who-and-when:<folder>:<file stem>` after the path it was given, so `1.json`
    imported from inside its folder is `who-and-when::1`: the folder as given, as found on disk, and none
    are tried in that order (the step count then confirms the run).
    """
    ids = [f"who-and-when:{path.parent.name}:{path.stem}", f"who-and-when:{path.resolve().parent.name}:{path.stem}",
           f"who-and-when::{path.stem}"]
    return list(dict.fromkeys(ids))


def _who_and_when(path: Path, source: str) -> Iterator[_Pending | str]:
    for value in _json_values(path):
        where = str(path)
        if not isinstance(value, dict) or "history" not in value or "mistake_step" not in value:
            yield f"{where}: not a Who&When log (needs history and mistake_step)"
            continue
        history = value["history"]
        if not isinstance(history, list):
            yield f"{where}: history is not a list"
            continue
        try:
            mistake = _int(value.get("mistake_step"), "mistake_step")
        except ValueError as exc:
            yield f"{where}: {exc}"
            continue
        if not 0 <= mistake < len(history):
            yield f"{where}: mistake_step {mistake} is outside the history (0..{len(history) - 1})"
            continue
        # history[i] is step i + 1: step 0 of the imported trajectory is the question
        label = Label(trajectory_id=who_and_when_ids(path)[0], label="decisive mistake", category="decisive",
                      step=mistake + 1, note=_str(value.get("mistake_reason")), agent=_str(value.get("mistake_agent")),
                      source=source)
        yield _Pending(where, label.trajectory_id, [label], n_steps=len(history) + 1, ids=who_and_when_ids(path))


# --- AgentRx -------------------------------------------------------------------------------------
def chat_message_steps(steps: list[dict[str, Any]]) -> list[int]:
    """For a trajectory the openai-chat importer made: the corpus step of each message, message 1 first.

    `steps`: the trajectory's steps in order, each with `step`, `source` and `observations` (or `n_observations`).
    System, user and agent steps are one message each; an agent step is followed by one message per
    observation (its tool results); an environment step is an orphan tool message.
    """
    out: list[int] = []
    for s in steps:
        out.append(int(s["step"]))
        if s["source"] == "agent":
            n_obs = s.get("n_observations")
            if n_obs is None:
                n_obs = len(s.get("observations") or [])
            out.extend([int(s["step"])] * int(n_obs))
    return out


def _agentrx(path: Path, source: str) -> Iterator[_Pending | str]:
    for n, value in enumerate(_json_values(path)):
        where = f"{path} record {n}"
        if not isinstance(value, dict) or "trajectory_id" not in value or not isinstance(value.get("failures"), list):
            yield f"{where}: not an AgentRx ground-truth record (needs trajectory_id and a failures list)"
            continue
        tid = _str(value["trajectory_id"])
        if tid is None:
            yield f"{where}: empty trajectory_id"
            continue
        try:
            labels = _agentrx_labels(value, source)
        except ValueError as exc:
            yield f"{where} ({tid}): {exc}"
            continue
        trial = value.get("trial")
        yield _Pending(where, tid, labels, trial=trial if isinstance(trial, int) and not isinstance(trial, bool)
                       else None)


def _agentrx_labels(value: dict[str, Any], source: str) -> list[Label]:
    """Labels with *message numbers* in `step` (mapped to corpus steps once the trajectory is known)."""
    labels = []
    by_id: dict[str, Label] = {}
    for i, failure in enumerate(value["failures"]):
        if not isinstance(failure, dict):
            raise ValueError(f"failures[{i}] is not an object")
        number = _int(failure.get("step_number"), f"failures[{i}].step_number")
        if number < 1:
            raise ValueError(f"failures[{i}].step_number {number} (message numbers start at 1)")
        label = Label(trajectory_id="", label=_str(failure.get("failure_category")) or "failure", category="failure",
                      step=number, note=_str(failure.get("step_reason")), agent=_str(failure.get("failed_agent")),
                      source=source)
        labels.append(label)
        if failure.get("failure_id") is not None:
            by_id[str(failure["failure_id"])] = label
    root = value.get("root_cause")
    if isinstance(root, dict) and root:
        rid = root.get("failure_id")
        base = by_id.get(str(rid)) if rid is not None else None
        if base is None and root.get("step_number") is not None:  # a root cause stated on its own
            number = _int(root.get("step_number"), "root_cause.step_number")
            base = Label(trajectory_id="", label=_str(root.get("failure_category")) or "failure",
                         category="failure", step=number, agent=_str(root.get("failed_agent")), source=source)
        if base is None:
            raise ValueError(f"root_cause names failure_id {rid!r}, which is not among the failures")
        reason = _str(root.get("root_cause_reason") or root.get("reason") or root.get("step_reason")) or base.note
        summary = _str(value.get("failure_summary"))
        note = "\n\n".join(x for x in (reason, f"Summary: {summary}" if summary else None) if x) or None
        labels.append(Label(trajectory_id="", label=base.label, category="root_cause", step=base.step, note=note,
                            agent=base.agent, source=source))
    return labels


# --- tables --------------------------------------------------------------------------------------
TABLE_COLUMNS = ("trajectory_id", "step", "label", "category", "note", "agent", "source")


def _table_rows(path: Path) -> list[dict[str, Any]]:
    import io

    data = _read_bytes(path)
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(io.BytesIO(data))
        elif path.suffix == ".csv":
            import pyarrow.csv as pacsv

            # every column as text: a step column is parsed below, ids like "007" keep their zeros
            names = pacsv.read_csv(io.BytesIO(data), read_options=pacsv.ReadOptions(skip_rows_after_names=10**9)
                                   ).column_names
            table = pacsv.read_csv(io.BytesIO(data), convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=True))
        else:
            return [v if isinstance(v, dict) else {"_bad": v} for v in _json_values(path)]
    except pa.ArrowException as exc:
        raise LabelError(f"{path}: not a readable label table ({str(exc)[:200]})") from exc
    missing = [c for c in ("trajectory_id", "label") if c not in table.column_names]
    if missing:
        raise LabelError(f"{path}: a label table needs the columns trajectory_id and label "
                         f"(missing {', '.join(missing)})")
    rows = table.select([c for c in TABLE_COLUMNS if c in table.column_names]).to_pylist()
    if path.suffix == ".csv":  # cells an export neutralised against spreadsheet formulas: their text again
        rows = [{k: restore(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows]
    return rows


def _table(path: Path, source: str | None) -> Iterator[_Pending | str]:
    for n, row in enumerate(_table_rows(path)):
        where = f"{path} row {n + 1}"
        if "_bad" in row or not row.get("trajectory_id") or not row.get("label"):
            yield f"{where}: needs a trajectory_id and a label"
            continue
        try:
            step = None if row.get("step") in (None, "") else _int(row["step"], "step")
        except ValueError as exc:
            yield f"{where}: {exc}"
            continue
        label = Label(trajectory_id=str(row["trajectory_id"]), label=str(row["label"]),
                      category=_str(row.get("category")) or "note", step=step, note=_str(row.get("note")),
                      agent=_str(row.get("agent")), source=source or _str(row.get("source")) or "import")
        yield _Pending(where, label.trajectory_id, [label])


# --- matching ------------------------------------------------------------------------------------
def _resolve_who_and_when(store: CorpusStore, pending: list[_Pending], report: LabelImportReport) -> list[Label]:
    steps = _step_counts(store, [i for p in pending for i in p.ids])
    out = []
    for p in pending:
        tid, expected = next((i for i in p.ids if i in steps), p.source_id), p.n_steps
        if tid not in steps:
            report.unmatched.append(f"{tid} (no such trajectory; import {p.where} with --format who-and-when first)")
        elif steps[tid] != expected:
            report.unmatched.append(f"{tid} (the corpus has {steps[tid]} steps, {p.where} has {expected}: "
                                    "not the run that was imported)")
        else:
            out += [Label(trajectory_id=tid, label=x.label, category=x.category, step=x.step, note=x.note,
                          agent=x.agent, source=x.source) for x in p.labels]
    return out


def _step_counts(store: CorpusStore, ids: list[str]) -> dict[str, int]:
    """n_steps of each of these trajectories that the corpus has."""
    known = sorted(known_trajectories(store, ids))
    out: dict[str, int] = {}
    for i in range(0, len(known), 10_000):
        chunk = known[i:i + 10_000]
        out.update((r["trajectory_id"], int(r["n_steps"] or 0)) for r in store.query(
            f"SELECT trajectory_id, n_steps FROM trajectories WHERE trajectory_id IN ({', '.join('?' for _ in chunk)})",
            chunk).to_pylist())
    return out


def _agentrx_candidates(store: CorpusStore, ids: list[str]) -> dict[str, list[tuple[str, int | None]]]:
    """AgentRx id -> [(trajectory_id, trial)] of the runs it can name: task_id tau-bench:<id>, or the id itself."""
    task_ids = [f"tau-bench:{i}" for i in ids]
    rows = store.query(f"SELECT trajectory_id, task_id, trial FROM trajectories WHERE task_id IN "
                       f"({', '.join('?' for _ in task_ids)}) OR trajectory_id IN ({', '.join('?' for _ in ids)}) "
                       f"ORDER BY trajectory_id", [*task_ids, *ids]).to_pylist()
    out: dict[str, list[tuple[str, int | None]]] = {i: [] for i in ids}
    for r in rows:
        if r["trajectory_id"] in out:
            out[r["trajectory_id"]].append((r["trajectory_id"], r["trial"]))
        task = r["task_id"] or ""
        if task.startswith("tau-bench:") and task[len("tau-bench:"):] in out and r["trajectory_id"] not in out:
            out[task[len("tau-bench:"):]].append((r["trajectory_id"], r["trial"]))
    return out


def _message_steps(store: CorpusStore, trajectory_id: str) -> list[int]:
    rows = store.query("SELECT step, source, len(observations) AS n_observations FROM steps WHERE trajectory_id = ? "
                       "ORDER BY step", [trajectory_id]).to_pylist()
    return chat_message_steps(rows)


def _resolve_agentrx(store: CorpusStore, pending: list[_Pending], report: LabelImportReport) -> list[Label]:
    candidates = _agentrx_candidates(store, sorted({p.source_id for p in pending}))
    out = []
    for p in pending:
        rid, trial = p.source_id, p.trial
        runs = candidates.get(rid, [])
        if trial is not None:
            runs = [r for r in runs if r[1] == trial]
        if not runs:
            report.unmatched.append(f"{rid} (no trajectory with task_id tau-bench:{rid}"
                                    f"{f' and trial {trial}' if trial is not None else ''})")
            continue
        if len(runs) > 1:
            report.unmatched.append(f"{rid} ({len(runs)} trials in the corpus; give the record a 'trial' to pick one)")
            continue
        tid = runs[0][0]
        messages = _message_steps(store, tid)
        mapped = []
        for label in p.labels:
            assert label.step is not None  # AgentRx labels always carry a message number
            if label.step > len(messages):
                report.problems.append(f"{p.where} ({rid}): step_number {label.step} is beyond the {len(messages)} "
                                       f"messages of {tid}")
                break
            mapped.append(Label(trajectory_id=tid, label=label.label, category=label.category,
                                step=messages[label.step - 1], note=label.note, agent=label.agent,
                                source=label.source))
        else:
            out += mapped
    return out


def _resolve_table(store: CorpusStore, pending: list[_Pending], report: LabelImportReport) -> list[Label]:
    steps = _step_counts(store, [p.source_id for p in pending])
    out = []
    for p in pending:
        label = p.labels[0]
        if label.trajectory_id not in steps:
            report.unmatched.append(f"{label.trajectory_id} (no such trajectory)")
        elif label.step is not None and label.step >= steps[label.trajectory_id]:
            report.problems.append(f"{p.where}: step {label.step} is beyond the {steps[label.trajectory_id]} steps "
                                   f"of {label.trajectory_id}")
        else:
            out.append(label)
    return out


def read_label_files(store: CorpusStore, paths: Iterable[Path | str], fmt: str, source: str | None = None
                     ) -> tuple[list[Label], LabelImportReport]:
    """Read label files and match them to the corpus; returns the matched labels (on corpus steps) and the report."""
    if fmt not in LABEL_FORMATS:
        raise LabelError(f"unknown label format {fmt!r}; choose one of {', '.join(LABEL_FORMATS)}")
    report = LabelImportReport()
    pending: list[_Pending] = []
    for path in _files(paths):
        report.files += 1
        reader = {"who-and-when": lambda p: _who_and_when(p, source or "who-and-when"),
                  "agentrx": lambda p: _agentrx(p, source or "agentrx"),
                  "table": lambda p: _table(p, source)}[fmt]
        for item in reader(path):
            report.records += 1
            if isinstance(item, str):
                report.problems.append(item)
            else:
                pending.append(item)
    resolve = {"who-and-when": _resolve_who_and_when, "agentrx": _resolve_agentrx, "table": _resolve_table}[fmt]
    labels = resolve(store, pending, report) if pending else []
    report.labels = len(labels)
    report.trajectories = {label.trajectory_id for label in labels}
    return labels, report


def import_label_files(paths: Iterable[Path | str], corpus: Path | str, fmt: str, source: str | None = None,
                       author: str | None = None, strict: bool = False) -> LabelImportReport:
    """Import label files into a corpus's annotations: all matched labels in one transaction, or none.

    Unmatched ids and malformed records are reported; with `strict` any of them stores nothing.
    """
    store = open_store(corpus)
    try:
        labels, report = read_label_files(store, paths, fmt, source)
    finally:
        store.close()
    if strict and (report.unmatched or report.problems):
        shown = [*report.unmatched[:10], *report.problems[:10]]
        raise LabelError(f"nothing imported (--strict): {len(report.unmatched)} unmatched, {len(report.problems)} "
                         f"problem(s): " + "; ".join(shown))
    if not labels:
        shown = [*report.unmatched[:5], *report.problems[:5]]
        raise LabelError("nothing to import: no record matched a trajectory of this corpus"
                         + (": " + "; ".join(shown) if shown else ""))
    added, skipped = add_labels(corpus, labels, author=author)
    report.added, report.already_present = len(added), skipped
    return report
