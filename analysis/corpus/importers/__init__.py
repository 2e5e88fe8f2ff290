"""`horizonlens import`: convert agent logs into a corpus, appending or creating (docs/importing.md).

Records stream through in bounded memory (batches are flushed to staged Parquet parts); a bad
record is reported with file, line/record and reason and the rest still imports (`strict`:
nothing does). Nothing touches the corpus until every input has been read: staged parts are then
moved in and the manifest is written last, so a failed import leaves the corpus as it was.
"""

from __future__ import annotations

import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from horizonlens.corpus.importers.formats import BY_NAME, FORMATS, Converted, detect
from horizonlens.corpus.importers.readers import Problem, Raw, iter_array, iter_object, iter_records, sniff
from horizonlens.corpus.importers.writer import StagedImport
from horizonlens.corpus.search_index import INDEX_DIR, build_index
from horizonlens.corpus.storage import CorpusPath, as_location
from horizonlens.errors import ImportFailed, RecordError

SUFFIXES = (".json", ".jsonl", ".traj", ".eval")


@dataclass
class ImportReport:
    """What an import did, for the CLI, the app and the closing note."""

    files: int = 0
    records: int = 0
    added: int = 0
    replaced: int = 0
    skipped_existing: int = 0
    steps: int = 0
    tool_calls: int = 0
    failed_checks: int = 0
    formats: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the CLI and the app: what was added, counts, outcomes, formats, problems, time."""
        fmts = ", ".join(f"{k}: {v}" for k, v in sorted(self.formats.items())) or "none"
        outs = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())) or "none"
        return (f"{self.added} trajectories added ({self.replaced} replaced, {self.skipped_existing} already present), "
                f"{self.steps:,} steps, {self.tool_calls:,} tool calls, {self.failed_checks:,} failed checks; "
                f"outcomes: {outs}; formats: {fmts}; {len(self.problems)} problem(s); {self.seconds:.1f}s")


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


def _inspect_zip(path: Path) -> Iterator[Raw | Problem]:
    """An Inspect AI .eval archive: header.json has the eval, samples/*.json one sample each."""
    import json

    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        header = json.loads(zf.read("header.json")) if "header.json" in names else {}
    eval_info = header.get("eval", {}) if isinstance(header, dict) else {}
    for raw in iter_records(path):
        if isinstance(raw, Problem):
            yield raw
        elif raw.where.startswith("samples/"):
            yield Raw({"eval": eval_info, "samples": [raw.value]}, raw.file, raw.where)


def records_of(path: Path) -> Iterator[Raw | Problem]:
    """The records of one input file, whatever its container (zip, JSON array, JSON Lines, one object)."""
    if zipfile.is_zipfile(path):
        yield from _inspect_zip(path)
    elif sniff(path) == "array" and _is_message_list(path):
        yield from iter_object(path)  # one conversation stored as a bare list of messages
    else:
        yield from iter_records(path)


def _is_message_list(path: Path) -> bool:
    """Does the array hold chat messages (one conversation) rather than records (one per run)?"""
    first = next(iter_array(path), None)
    return isinstance(first, Raw) and isinstance(first.value, dict) and "role" in first.value \
        and not {"traj", "messages", "history", "steps"} & set(first.value)


def convert(raw: Raw, fmt_name: str) -> Iterator[Converted]:
    """Convert one record in the named format (or the detected one for "auto"), tagged with format and file."""
    fmt = BY_NAME[fmt_name] if fmt_name != "auto" else detect(raw.value)
    if fmt is None:
        raise ValueError("unrecognised record (not any supported format; pass --format to force one)")
    for traj, steps in fmt.convert(raw):
        traj.setdefault("metadata", "{}")
        traj["_format"] = fmt.name
        traj["_file"] = raw.file
        yield traj, steps


def import_paths(paths: Iterable[Path | str], into: CorpusPath | str, fmt: str = "auto", replace: bool = False,
                 strict: bool = False, batch_size: int = 500,
                 progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import every record of `paths` into the corpus at `into` (created if missing)."""
    if fmt != "auto" and fmt not in BY_NAME:
        raise ImportFailed(f"unknown format {fmt!r}; choose auto or one of {', '.join(f.name for f in FORMATS)}")
    started = time.perf_counter()
    files = input_files(paths)
    report = ImportReport(files=len(files))
    into = as_location(into)
    with StagedImport(into, replace=replace, batch_size=batch_size) as staged:
        for path in files:
            for raw in records_of(path):
                if isinstance(raw, Problem):
                    report.problems.append(raw)
                    continue
                report.records += 1
                try:
                    converted = list(convert(raw, fmt))
                    for traj, steps in converted:
                        staged.validate(traj, steps)
                except (RecordError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
                    report.problems.append(Problem(raw.file, raw.where, str(exc)[:300] or type(exc).__name__))
                    continue
                for traj, steps in converted:
                    _count(report, staged.add(traj, steps), traj, steps)
                if progress:
                    progress(1)
        if strict and report.problems:
            staged.abort()
            raise ImportFailed("strict mode: nothing imported because of "
                               f"{len(report.problems)} problem(s):\n" + "\n".join(map(str, report.problems[:20])))
        if report.records == 0 and report.problems and not staged.corpus_exists:
            staged.abort()
            raise ImportFailed("nothing readable to import:\n" + "\n".join(map(str, report.problems[:20])))
        had_index = (into / INDEX_DIR / "manifest.json").exists()
        staged.commit()
    if had_index:  # keep word search fast: an index that existed is rebuilt to cover the new files
        build_index(into)
    report.seconds = time.perf_counter() - started
    return report


def _count(report: ImportReport, status: str, traj: dict[str, Any], steps: list[dict[str, Any]]) -> None:
    if status == "exists":
        report.skipped_existing += 1
        return
    if status == "duplicate":
        report.problems.append(Problem(traj.get("_file", "?"), traj["trajectory_id"], "duplicate id in this import"))
        return
    report.added += 1
    report.replaced += status == "replaced"
    report.steps += len(steps)
    report.tool_calls += sum(len(s["tool_calls"] or []) for s in steps)
    report.failed_checks += sum(1 for s in steps if s["check_passed"] is False)
    report.formats[traj["_format"]] += 1
    report.outcomes[traj["outcome"]] += 1
