"""What every label file format shares: labels waiting for their run, the import report, strict field readers.

A label file's record becomes `Pending` labels, which wait until the format (formats/*.py, which owns its
ids and its step numbering) has found their trajectory and step in the corpus. Field readers are strict:
text must be text and step numbers whole numbers; a NaN, a number where text belongs, or an object is refused
with the field's name, never written down as its string form.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from horizonlens.errors import LabelError
from horizonlens.labels.annotations import Label, clean

if TYPE_CHECKING:
    from horizonlens.query.store import CorpusStore

MAX_PROBLEMS_PER_FILE = 1000  # past this, a file is given up (it is most likely not a label file at all)


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


@dataclass(slots=True)
class Pending:
    """One source record's labels, waiting for their trajectory to be resolved."""

    where: str  # "<file> record 3", "<file> line 2", "<file> row 7"
    source_id: str  # the id the source gives the run
    labels: list[Label]
    n_steps: int | None = None  # Who&When: the step count the imported trajectory must have
    trial: int | None = None  # AgentRx: which trial of the task, when the record says
    ids: list[str] = field(default_factory=list)  # Who&When: the trajectory ids to try, in order


def located(path: Path, where: str) -> str:
    """Where a record is, for problem lines: the file, and its line or record number when it has several."""
    return str(path) if where == "file" else f"{path} {where}"


def text(value: Any, what: str) -> str | None:
    """A text field of a label record: None when absent or blank; ValueError for anything that is not text."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} is {_kind(value)}, not text")
    return value


def identifier(value: Any, what: str) -> str | None:
    """A run's id as a source gives it: text or a whole number (JSON ids often are); anything else is refused."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return text(value, what)


def step_number(value: Any, what: str) -> int:
    """A step or message number: a whole number, or digits as text (Who&When writes "2"); ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{what} is {_kind(value)}, not a step number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        digits = value.strip()
        if digits.lstrip("-").isascii() and digits.lstrip("-").isdigit() and len(digits) <= 12:
            return int(digits)
    raise ValueError(f"{what} is not a step number: {str(value)[:40]!r}")


def _kind(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return f"the number {value}"
    names = {bool: "a boolean", int: "a number", float: "a number", dict: "an object", list: "a list"}
    return names.get(type(value), type(value).__name__)


def checked(labels: list[Label]) -> list[Label]:
    """Labels checked as they will be stored (annotations.clean), before their run is known; ValueError if not.

    A record's labels are checked as it is read, so a refused record is never held while the file is read.
    """
    try:
        return [replace(clean(replace(x, trajectory_id=x.trajectory_id or "?")), trajectory_id=x.trajectory_id)
                for x in labels]
    except LabelError as exc:
        raise ValueError(str(exc)) from exc


def accept(pending: Pending, labels: list[Label], report: LabelImportReport) -> list[Label]:
    """The record's labels on their corpus steps, checked as they will be stored (annotations.clean).

    A label that cannot be stored (too long, empty) makes its record a problem; the other records still import.
    """
    try:
        return [clean(label) for label in labels]
    except LabelError as exc:
        report.problems.append(f"{pending.where}: {exc}")
        return []


def step_counts(store: CorpusStore, ids: Iterable[str]) -> dict[str, int]:
    """n_steps of each of these trajectories that the corpus has (the others are not in the result)."""
    wanted = sorted(set(ids))
    out: dict[str, int] = {}
    for i in range(0, len(wanted), 10_000):
        chunk = wanted[i:i + 10_000]
        out.update((r["trajectory_id"], int(r["n_steps"] or 0)) for r in store.query(
            f"SELECT trajectory_id, n_steps FROM trajectories WHERE trajectory_id IN ({', '.join('?' for _ in chunk)})",
            chunk).to_pylist())
    return out
