"""`horizonlens import`: convert agent logs into a corpus, appending or creating (docs/importing.md).

Records stream through in bounded memory (readers.py, zips.py; batches are flushed to unpublished
Parquet files); a bad record is reported with file, line/record and reason and the rest still imports
(`strict`: nothing does). The whole import is one corpus transaction (writer.py): nothing becomes
visible until every input has been read, and a failed import leaves the corpus as it was.
"""

from __future__ import annotations

import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from horizonlens.derived.build import after_import
from horizonlens.derived.search_index import INDEX_DIR
from horizonlens.errors import ImportFailed, RecordError
from horizonlens.ingest.formats.inspect_log import read_eval
from horizonlens.ingest.parquet_rows import parquet_records
from horizonlens.ingest.readers import (
    MAX_STRING_BYTES,
    MIB,
    Problem,
    Raw,
    file_chunks,
    iter_records,
    records_from_chunks,
    sniff,
)
from horizonlens.ingest.registry import BY_NAME, FORMATS, convert
from horizonlens.ingest.writer import StagedImport
from horizonlens.labels.annotations import remove_past_end
from horizonlens.storage.location import CorpusPath, as_location

SUFFIXES = (".json", ".jsonl", ".traj", ".eval", ".parquet")
MAX_AGENT_CHARS = 200  # an agent name is a label in every page and part of trajectory ids


@dataclass
class ImportReport:
    """What an import did, for the CLI and the app."""

    files: int = 0
    records: int = 0
    added: int = 0
    replaced: int = 0
    skipped_existing: int = 0  # ids already in the corpus with the same content
    conflicts: list[Problem] = field(default_factory=list)  # ids already in the corpus with different content
    steps: int = 0
    tool_calls: int = 0
    failed_checks: int = 0
    formats: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)  # records not imported, with where and why
    notices: list[Problem] = field(default_factory=list)  # records imported with a change (a string value cut)
    seconds: float = 0.0
    replaced_lengths: dict[str, int] = field(default_factory=dict)  # steps of each replaced run now
    labels_removed: tuple[int, int] = (0, 0)  # labels past the new end of replaced runs, and on how many runs
    corpus: str = ""  # where the import wrote: the corpus folder or s3:// location

    def summary(self) -> str:
        """One line for the CLI and the app: what was added, counts, outcomes, formats, problems, time."""
        fmts = ", ".join(f"{k}: {v}" for k, v in sorted(self.formats.items())) or "none"
        outs = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())) or "none"
        cut = f", {len(self.notices)} cut" if self.notices else ""
        labels, runs = self.labels_removed
        removed = (f"; {labels} label{'s' * (labels != 1)} on steps past the new end of {runs} replaced "
                   f"run{'s' * (runs != 1)} removed (kept in the label history)") if labels else ""
        clash = f", {len(self.conflicts)} conflicting" if self.conflicts else ""
        line = (f"{self.added} trajectories added ({self.replaced} replaced, {self.skipped_existing} already present"
                f"{clash}), {self.steps:,} steps, {self.tool_calls:,} tool calls, "
                f"{self.failed_checks:,} failed checks; outcomes: {outs}; formats: {fmts}; "
                f"{len(self.problems)} problem(s){cut}{removed}; {self.seconds:.1f}s"
                + (f"; written to {self.corpus}" if self.corpus else ""))
        if self.conflicts:
            line += (f". {len(self.conflicts)} run(s) not imported: their ids are already in the corpus with different "
                     "content (another model's runs of the same tasks?). Give each model its --agent NAME to keep "
                     "both, or --replace to replace.")
        return line


def input_files(paths: Iterable[Path | str]) -> list[Path]:
    """The files to import: given files as they are, directories searched for known suffixes."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(SUFFIXES)
                          and f.name != "result.json")
        elif p.exists():
            out.append(p)
        else:
            raise ImportFailed(f"{p}: no such file or directory")
    return out


def records_of(path: Path) -> Iterator[Raw | Problem]:
    """The records of one input file, whatever its container (zip, Parquet, JSON array, JSON Lines, one value)."""
    kind = sniff(path)
    if kind == "zip" or (path.suffix == ".eval" and zipfile.is_zipfile(path)):
        yield from read_eval(path)
    elif kind == "parquet":
        yield from parquet_records(path)  # one record per row (Hugging Face datasets, Horizon Lens exports)
    elif kind == "array" and _is_message_list(path):
        yield from records_from_chunks(file_chunks(path), str(path), "value")  # one conversation as a bare list
    else:
        yield from iter_records(path)


def _is_message_list(path: Path) -> bool:
    """Does the array hold chat messages (one conversation) rather than records (one per run)?"""
    first = next(iter_records(path), None)
    return isinstance(first, Raw) and isinstance(first.value, dict) and "role" in first.value \
        and not {"traj", "messages", "history", "steps"} & set(first.value)


def _cut_notice(raw: Raw) -> Problem:
    largest = max(raw.cuts) / MIB
    return Problem(raw.file, raw.where, f"imported with {len(raw.cuts)} string value(s) cut at "
                                        f"{MAX_STRING_BYTES / MIB:g} MB (the largest had {largest:,.1f} MB)")


def import_paths(paths: Iterable[Path | str], into: CorpusPath | str, fmt: str = "auto", replace: bool = False,
                 strict: bool = False, batch_size: int = 500,
                 progress: Callable[[int], None] | None = None, agent: str | None = None) -> ImportReport:
    """Import every record of `paths` into the corpus at `into` (created if missing).

    `agent` tags every run whose record names no agent (the model or policy that produced it), and goes
    into its id so that two models' runs of the same task both stay. A record whose id is already in the
    corpus with different content is a conflict in the report, not imported (unless `replace`). A record
    that cannot be read or converted (`RecordError`) is a problem in the report; any other exception is a
    bug and propagates.
    """
    agent = agent.strip() if agent else None
    if agent is not None and (len(agent) > MAX_AGENT_CHARS or not agent.isprintable()):
        raise ImportFailed(f"--agent must be printable text of at most {MAX_AGENT_CHARS} characters")
    files = input_files(paths)
    records = (raw for path in files for raw in records_of(path))
    return import_records(records, into, fmt=fmt, replace=replace, strict=strict, batch_size=batch_size,
                          progress=progress, files=len(files), agent=agent)


def import_records(records: Iterable[Raw | Problem], into: CorpusPath | str, fmt: str = "auto",
                   replace: bool = False, strict: bool = False, batch_size: int = 500,
                   progress: Callable[[int], None] | None = None, files: int = 0,
                   agent: str | None = None) -> ImportReport:
    """Import records already read (from files, or from the new lines of a watched file) in one transaction.

    `agent`: as in `import_paths`.
    """
    if fmt != "auto" and fmt not in BY_NAME:
        raise ImportFailed(f"unknown format {fmt!r}; choose auto or one of {', '.join(f.name for f in FORMATS)}")
    started = time.perf_counter()
    into = as_location(into)
    report = ImportReport(files=files, corpus=str(into))
    with StagedImport(into, replace=replace, batch_size=batch_size) as staged:
        for raw in records:
            if isinstance(raw, Problem):
                report.problems.append(raw)
                continue
            report.records += 1
            try:
                converted = list(convert(raw, fmt, agent))
                for traj, steps in converted:
                    staged.validate(traj, steps)
            except RecordError as exc:
                report.problems.append(Problem(raw.file, raw.where, str(exc)[:300]))
                continue
            if raw.cuts:
                report.notices.append(_cut_notice(raw))
            for traj, steps in converted:
                _count(report, staged.add(traj, steps, (raw.file, raw.where)), traj, steps)
            if progress:
                progress(1)
        if strict and report.problems:
            staged.abort()
            raise ImportFailed("strict mode: nothing imported because of "
                               f"{len(report.problems)} problem(s):\n" + "\n".join(map(str, report.problems[:20])))
        if report.records == 0 and report.problems and not staged.corpus_exists:
            staged.abort()
            raise ImportFailed("nothing readable to import:\n" + "\n".join(map(str, report.problems[:20])))
        same, conflicts = staged.collisions_settled()
        report.skipped_existing = len(same)
        report.conflicts = [Problem(c.file, c.where, f"id {c.trajectory_id!r} is already in the corpus with different "
                                                     "content; not imported") for c in conflicts]
        had_index = (into / INDEX_DIR / "manifest.json").exists()
        staged.commit()
    # aggregates, and the search index if there was one, are brought up to date with the new files
    after_import(into, search=had_index)
    # a replaced run may be shorter now: labels on its lost steps would point at nothing
    report.labels_removed = remove_past_end(into, report.replaced_lengths, author="horizonlens import --replace")
    report.seconds = time.perf_counter() - started
    return report


def _count(report: ImportReport, status: str, traj: dict[str, Any], steps: list[dict[str, Any]]) -> None:
    if status == "exists":  # same content or a conflict: settled against the corpus before the commit
        return
    if status == "duplicate":
        report.problems.append(Problem(traj.get("_file", "?"), traj["trajectory_id"], "duplicate id in this import"))
        return
    report.added += 1
    report.replaced += status == "replaced"
    if status == "replaced":
        report.replaced_lengths[traj["trajectory_id"]] = len(steps)
    report.steps += len(steps)
    report.tool_calls += sum(len(s["tool_calls"] or []) for s in steps)
    report.failed_checks += sum(1 for s in steps if s["check_passed"] is False)
    report.formats[traj["_format"]] += 1
    report.outcomes[traj["outcome"]] += 1
