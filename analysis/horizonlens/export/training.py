"""`horizonlens export`: selected runs written as training data, streamed, with a manifest (docs/export.md).

The selected runs are read from the corpus in batches (a few hundred runs, bounded by their token count),
turned into chat messages, truncated, redacted, deduplicated and counted under the chat template, then
appended to the data file; no more than one batch is ever in memory. A run that cannot be exported is
reported with its reason (`problems.jsonl`, and counted in the manifest) and the rest export. Everything
is written into an `ExportFolder` and published at the end in one rename (export/output.py).

The output depends only on the options and the corpus state: the same command on the same corpus state
writes byte-identical files (no clock, no random names inside).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow.parquet as pq

from horizonlens import __version__
from horizonlens.errors import ExportError
from horizonlens.export.output import ExportFolder
from horizonlens.export.records import (
    DATA_FILES,
    PARQUET_SCHEMA,
    ExportedRun,
    cut_before,
    exported_run,
    fingerprint,
    jsonl_line,
    openai_row,
    parquet_table,
    sharegpt_row,
)
from horizonlens.export.redact import Redactor
from horizonlens.export.selection import ExportOptions, select_runs
from horizonlens.export.tokens import ChatTemplateCounter, RunNotCounted
from horizonlens.query.store import CorpusStore
from horizonlens.storage.access import Permission, require
from horizonlens.storage.atomic import sha256_file

BATCH_RUNS = 256  # runs read from the corpus at a time ...
BATCH_TOKENS = 2_000_000  # ... or fewer, when their steps hold more tokens than this together
PROBLEMS = "problems.jsonl"
PROBLEMS_SHOWN = 20  # problems kept in the report for the CLI and the app (all of them are in problems.jsonl)
# The columns an export reads of each table.
TRAJECTORY_COLUMNS = ("trajectory_id", "task_id", "trial", "source", "agent", "teacher", "domain", "outcome", "reward",
                 "metadata")
STEP_COLUMNS = ("trajectory_id", "step", "source", "reasoning", "message", "tool_calls", "observations", "knowledge",
                 "check_passed", "is_decisive_error", "n_tokens")


@dataclass
class ExportReport:
    """What an export wrote and what it left out, for the CLI, the app and the manifest."""

    target: Path
    format: str
    selected: int = 0
    runs: int = 0
    steps: int = 0
    truncated: int = 0
    flagged: int = 0  # runs over --max-tokens kept with over_max_tokens = true
    tokens: int | None = None  # total under the chat template (when a checkpoint counted them)
    dropped: Counter = field(default_factory=Counter)  # reason -> runs
    not_counted: int = 0  # runs kept whose tokens the chat template could not count
    problems: list[dict[str, Any]] = field(default_factory=list)  # the first PROBLEMS_SHOWN, for display
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self, where: bool = True) -> str:
        """One line: runs and steps written, truncated, flagged, dropped by reason, tokens, and where.

        `where=False` names only the folder (a page never shows a server path).
        """
        dropped = ", ".join(f"{n} {reason}" for reason, n in sorted(self.dropped.items())) or "none"
        tokens = f"; {self.tokens:,} tokens under the chat template" if self.tokens is not None else ""
        flagged = f", {self.flagged} flagged over --max-tokens" if self.flagged else ""
        return (f"{self.runs:,} of {self.selected:,} selected runs exported ({self.steps:,} steps, {self.truncated:,} "
                f"truncated{flagged}); dropped: {dropped}{tokens}; {self.format} in "
                f"{self.target if where else self.target.name} "
                f"({self.seconds:.1f}s)")


class _Writer:
    """The data file of one format, appended to batch by batch."""

    def __init__(self, path: Path, fmt: str):
        self.fmt, self.rows = fmt, 0
        self.parquet = pq.ParquetWriter(path, PARQUET_SCHEMA, compression="zstd") if fmt == "hf-parquet" else None
        self.fh: IO[bytes] | None = None if self.parquet else open(path, "wb")

    def write(self, runs: list[ExportedRun]) -> None:
        self.rows += len(runs)
        if self.parquet is not None:
            if runs:
                self.parquet.write_table(parquet_table(runs))
            return
        assert self.fh is not None
        to_row = sharegpt_row if self.fmt == "sharegpt" else openai_row
        self.fh.writelines(jsonl_line(to_row(run)) for run in runs)

    def close(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
        if self.fh is not None:
            self.fh.close()


def export_runs(store: CorpusStore, out: Path | str, options: ExportOptions,
                progress: Callable[[int, int], None] | None = None) -> ExportReport:
    """Write the runs `options` select from `store` into the folder `out` (see the module docstring).

    ExportError for options that cannot work, an empty selection, or an `out` that exists and is not a
    previous export; nothing is written then. The principal acting needs the `export` permission.
    """
    require(Permission.EXPORT)
    started = time.perf_counter()
    options.validate()
    redactor = Redactor(list(options.redact), defaults=options.default_redactions)
    folder = ExportFolder(out)
    counter = ChatTemplateCounter(options.checkpoint) if options.checkpoint else None
    ids, sizes = select_runs(store, options)
    report = ExportReport(target=folder.target, format=options.format, selected=len(ids))
    if counter is not None and counter.has_template:
        report.tokens = 0
    data_file = DATA_FILES[options.format]
    seen: dict[str, str] = {}  # conversation digest -> the first run that had it (--dedupe)
    with folder, open(folder.path(PROBLEMS), "wb") as problems:
        writer = _Writer(folder.path(data_file), options.format)
        try:
            for batch in _batches(store, ids, sizes):
                kept = []
                for traj, steps in batch:
                    run = _prepare(traj, steps, options, redactor, counter, seen, report, problems)
                    if run is not None:
                        kept.append(run)
                writer.write(kept)
                if progress:
                    progress(len(batch), len(ids))
        finally:
            writer.close()
        problems.close()
        report.files = {name: _describe_file(folder.path(name)) for name in (data_file, PROBLEMS)}
        report.files[data_file]["rows"] = writer.rows
        report.seconds = time.perf_counter() - started
        folder.write_manifest(_manifest(store, options, report, redactor, counter))
        folder.publish()
    return report


def _batches(store: CorpusStore, ids: list[str], sizes: list[int]
             ) -> Iterator[list[tuple[dict[str, Any], list[dict[str, Any]]]]]:
    """The selected runs with their steps, a batch at a time, in id order."""
    start = 0
    while start < len(ids):
        end, tokens = start, 0
        while end < len(ids) and end - start < BATCH_RUNS and (end == start or tokens < BATCH_TOKENS):
            tokens += sizes[end]
            end += 1
        chunk = ids[start:end]
        where = "trajectory_id BETWEEN ? AND ? AND trajectory_id IN (SELECT unnest(?::VARCHAR[]))"
        params = [chunk[0], chunk[-1], chunk]
        trajs = store.query(f"SELECT {', '.join(TRAJECTORY_COLUMNS)} FROM trajectories WHERE {where}",
                            params).to_pylist()
        steps = store.query(f"SELECT {', '.join(STEP_COLUMNS)} FROM steps WHERE {where} "
                            "ORDER BY trajectory_id, step", params).to_pylist()
        by_run: dict[str, list[dict[str, Any]]] = {}
        for s in steps:
            by_run.setdefault(s["trajectory_id"], []).append(s)
        order = {tid: i for i, tid in enumerate(chunk)}
        yield [(t, by_run.get(t["trajectory_id"], [])) for t in sorted(trajs, key=lambda t: order[t["trajectory_id"]])]
        start = end


def _prepare(traj: dict[str, Any], steps: list[dict[str, Any]], options: ExportOptions, redactor: Redactor,
             counter: ChatTemplateCounter | None, seen: dict[str, str], report: ExportReport,
             problems: IO[bytes]) -> ExportedRun | None:
    """One run made ready to write, or None (the reason recorded) if it is left out."""
    tid = traj["trajectory_id"]

    def problem(reason: str, detail: str, dropped: bool = True) -> None:
        entry = {"trajectory_id": tid, "action": "dropped" if dropped else "kept", "reason": reason, "detail": detail}
        problems.write(jsonl_line(entry))
        if len(report.problems) < PROBLEMS_SHOWN:
            report.problems.append(entry)
        if dropped:
            report.dropped[reason] += 1

    cut = cut_before(steps, options.truncate_at)
    if cut is not None and cut == 0:
        problem("nothing before the cut", f"--truncate-at {options.truncate_at} cuts before step 0")
        return None
    run = exported_run(traj, steps, cut)
    if not run.messages:
        problem("no messages", "the run has no steps")
        return None
    if redactor.active:
        run.messages = redactor.messages(run.messages)
        run.tools = redactor.value(run.tools)
    if options.dedupe:
        digest = hashlib.sha256(fingerprint(run).encode("utf-8")).hexdigest()
        if digest in seen:
            problem("duplicate", f"the same conversation as {seen[digest]}")
            return None
        seen[digest] = tid
    if counter is not None:
        try:
            run.meta["n_tokens"] = counter.count(run.messages, run.tools)
        except RunNotCounted as exc:
            if exc.unrenderable:
                problem("not renderable", str(exc))
                return None
            if options.max_tokens is not None:
                problem("tokens not counted", f"{exc}; --max-tokens cannot be checked")
                return None
            problem("tokens not counted", str(exc), dropped=False)
            report.not_counted += 1
        else:
            if options.max_tokens is not None:
                over = run.meta["n_tokens"] > options.max_tokens
                if over and options.over_max_tokens == "drop":
                    problem("over --max-tokens", f"{run.meta['n_tokens']:,} tokens under the chat template, "
                                                 f"more than {options.max_tokens:,}")
                    return None
                run.meta["over_max_tokens"] = over
                report.flagged += over
            if report.tokens is not None:
                report.tokens += run.meta["n_tokens"]
    report.runs += 1
    report.steps += run.meta["n_steps"]
    report.truncated += cut is not None
    return run


def _describe_file(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _manifest(store: CorpusStore, options: ExportOptions, report: ExportReport, redactor: Redactor,
              counter: ChatTemplateCounter | None) -> dict[str, Any]:
    """What the export holds and where it came from; no clock, so the same export gives the same bytes."""
    snapshot = store.corpus_snapshot
    tokens: dict[str, Any] = {"total": report.tokens}
    if counter is not None:
        tokens.update(counter.describe())
    tokens["max_tokens"] = options.max_tokens
    return {
        "format": options.format,
        "files": report.files,
        "selection": options.describe(),
        "source": {"corpus": str(store.root), "corpus_state": snapshot.fingerprint, "corpus_version": snapshot.version},
        "counts": {"selected": report.selected, "runs": report.runs, "steps": report.steps,
                   "truncated": report.truncated, "flagged_over_max_tokens": report.flagged,
                   "not_counted": report.not_counted, "dropped": dict(sorted(report.dropped.items()))},
        "tokens": tokens,
        "redaction": redactor.describe(),
        "horizonlens": __version__,
        "load": {"openai-jsonl": 'datasets.load_dataset("json", data_files="train.jsonl")',
                 "sharegpt": 'LLaMA-Factory: formatting "sharegpt", file_name "train.jsonl"',
                 "hf-parquet": 'datasets.load_dataset("parquet", data_files="train.parquet")'}[options.format],
    }


def read_manifest(folder: Path | str) -> dict[str, Any]:
    """The manifest of an export folder (ExportError if the folder holds no export)."""
    path = Path(folder) / "manifest.json"
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{folder}: no readable export manifest ({exc})") from exc
