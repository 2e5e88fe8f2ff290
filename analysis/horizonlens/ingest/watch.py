"""Following a folder of logs while runs are written: new files and new lines become runs in the corpus.

`FolderWatcher.poll()` looks at every log file under the folder once (`horizonlens import --watch` and
`horizonlens serve --watch` call it in a loop):

- **JSON Lines** (`.jsonl`): only the bytes after what was already read are read. A last line without
  its newline is still being written and waits for it. Each new line is a record, imported as usual.
- **Other files** (`.json`, `.traj`, `.eval`) are read whole once they have stopped changing for
  `settle_s` (a writer is done with them), and again whenever they change.
- **Rewritten or truncated files.** A JSON Lines file that shrank, was replaced (another inode) or whose
  bytes before the read position changed is read again from the start, and a whole file that changed is
  read again. Runs read again replace their earlier copy (same trajectory id), so a rewritten file never
  leaves duplicate runs. Runs a file no longer holds stay in the corpus: a log rotated or emptied by its
  writer does not delete what was already imported.

Everything one poll found is imported in one corpus transaction (so readers see all of it or none), and
the derived data (aggregates, search index) are brought up to date with it, as after any import. The
positions reached are kept in memory: after a restart each file is read once more from its start, and runs
already in the corpus are skipped.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from horizonlens.errors import ImportFailed
from horizonlens.ingest.pipeline import SUFFIXES, import_records, records_of
from horizonlens.ingest.readers import Problem, Raw, records_from_chunks
from horizonlens.storage.location import CorpusPath, as_location

TAIL = 1024  # bytes before the read position that must be unchanged for a file to count as appended to
_LINE = re.compile(r"^line (\d+)$")


@dataclass
class _FileState:
    """How far one file has been read, and the runs it gave."""

    inode: int = -1
    offset: int = 0  # bytes read (always just after a newline)
    lines: int = 0  # lines read
    tail: bytes = hashlib.sha256(b"").digest()  # sha256 of the TAIL bytes before `offset`
    signature: tuple[int, int, int] = (-1, -1, -1)  # (inode, size, mtime_ns) of a whole file when last read


@dataclass
class WatchReport:
    """What one poll did: runs added and replaced, files read from the start again, problems."""

    added: int = 0
    replaced: int = 0
    reread: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    bytes_read: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        """Whether the corpus changed."""
        return bool(self.added or self.replaced)

    def summary(self) -> str:
        """One line for the log."""
        again = f"; read again: {', '.join(self.reread)}" if self.reread else ""
        return (f"{self.added} run(s) added, {self.replaced} replaced, "
                f"{len(self.problems)} problem(s), {self.bytes_read:,} bytes read in {self.seconds:.1f}s{again}")


@dataclass
class _Batch:
    """The records of one poll, split by how they must be imported."""

    fresh: list[Raw | Problem] = field(default_factory=list)  # first read since start: runs present are skipped
    changed: list[Raw | Problem] = field(default_factory=list)  # appended or rewritten: the file's copy wins
    states: dict[str, _FileState] = field(default_factory=dict)  # positions to keep once the import commits


class FolderWatcher:
    """Imports what appears under `folder` into the corpus `into` (see the module docstring)."""

    def __init__(self, folder: Path | str, into: CorpusPath | str, fmt: str = "auto", settle_s: float = 1.0,
                 log: Callable[[str], None] = lambda s: None):
        self.folder = Path(folder)
        self.into = as_location(into)
        self.fmt = fmt
        self.settle_s = settle_s
        self.log = log
        self.files: dict[str, _FileState] = {}
        self.polls = 0
        self.last_change: float | None = None  # time.time() of the last poll that changed the corpus

    def poll(self) -> WatchReport:
        """Look at every file once and import what is new (one transaction); what it did."""
        started = time.perf_counter()
        report = WatchReport()
        batch = _Batch()
        if not self.folder.is_dir():
            report.problems.append(Problem(str(self.folder), "folder", "the watched folder does not exist"))
            return report
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES)):
            try:
                if path.suffix == ".jsonl":
                    report.bytes_read += self._lines(path, batch, report)
                else:
                    report.bytes_read += self._whole(path, batch, report)
            except OSError as exc:  # removed or unreadable between listing and reading: try again next poll
                report.problems.append(Problem(str(path), "file", f"cannot be read now ({exc.strerror})"))
        self._import(batch, report)
        self.polls += 1
        report.seconds = time.perf_counter() - started
        if report.changed:
            self.last_change = time.time()
        return report

    def run(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        """Poll until `stop` is set; every poll that changed something, or failed, is logged."""
        while not stop.is_set():
            try:
                report = self.poll()
            except Exception as exc:  # noqa: BLE001 - a watcher outlives one bad poll; the next one retries
                self.log(f"watch {self.folder}: poll failed: {exc}")
            else:
                if report.changed or report.reread:
                    self.log(f"watch {self.folder}: {report.summary()}")
                for problem in report.problems[:20]:
                    self.log(f"watch: skipped: {problem}")
            stop.wait(interval_s)

    # --- one file ----------------------------------------------------------------------------------
    def _lines(self, path: Path, batch: _Batch, report: WatchReport) -> int:
        """New complete lines of a JSON Lines file into the batch; bytes read."""
        key = str(path)
        with path.open("rb") as fh:
            st = os.fstat(fh.fileno())
            old = self.files.get(key)
            state = _FileState(old.inode, old.offset, old.lines, old.tail) if old else None
            if state is not None and not self._continues(fh, st, state):
                report.reread.append(path.name)
                state = _FileState()
            fresh = state is None
            state = state or _FileState()
            state.inode = st.st_ino
            if not fresh and state.offset == 0:
                batch.states[key] = state  # read again from the start: remembered even before its first line
            if st.st_size == state.offset:
                return 0
            fh.seek(state.offset)
            data = fh.read(st.st_size - state.offset)
            end = data.rfind(b"\n")
            if end < 0:  # a half-written line: wait for its newline
                return len(data)
            tail = _tail_hash_of(fh, state.offset + end + 1)
        complete = data[:end + 1]
        if state.offset == 0 and complete.startswith(b"\xef\xbb\xbf"):
            complete = complete[3:]
        records = list(_renumber(records_from_chunks([complete], key, "lines"), state.lines))
        (batch.fresh if fresh else batch.changed).extend(records)
        state.offset += end + 1
        state.lines += complete.count(b"\n")
        state.tail = tail
        batch.states[key] = state
        return len(data)

    @staticmethod
    def _continues(fh: BinaryIO, st: os.stat_result, state: _FileState) -> bool:
        """Whether the file is the one read before, grown or unchanged (not replaced, truncated or rewritten)."""
        if st.st_ino != state.inode or st.st_size < state.offset:
            return False
        return _tail_hash_of(fh, state.offset) == state.tail

    def _whole(self, path: Path, batch: _Batch, report: WatchReport) -> int:
        """A whole file into the batch once it has settled after a change; bytes read."""
        key = str(path)
        st = path.stat()
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        old = self.files.get(key)
        if old is not None and old.signature == signature:
            return 0
        if time.time() - st.st_mtime_ns / 1e9 < self.settle_s:
            return 0  # still being written (or just written): look again next poll
        records = list(records_of(path))
        if old is None:
            batch.fresh.extend(records)
        else:
            report.reread.append(path.name)
            batch.changed.extend(records)
        batch.states[key] = _FileState(inode=st.st_ino, signature=signature)
        return st.st_size

    # --- the import --------------------------------------------------------------------------------
    def _import(self, batch: _Batch, report: WatchReport) -> None:
        """Import the batch (runs first seen: skipped when present; changed files: their copy wins); keep positions."""
        for records, replace in ((batch.fresh, False), (batch.changed, True)):
            if not any(isinstance(r, Raw) for r in records):
                report.problems += [r for r in records if isinstance(r, Problem)]
                continue
            try:
                done = import_records(iter(records), self.into, fmt=self.fmt, replace=replace)
            except ImportFailed as exc:  # nothing readable in what was new: reported once, not retried
                report.problems.append(Problem(str(self.folder), "import", str(exc).splitlines()[0]))
                continue
            report.added += done.added - done.replaced
            report.replaced += done.replaced
            report.problems += done.problems
        self.files.update(batch.states)


def _renumber(records: Iterator[Raw | Problem], before: int) -> Iterator[Raw | Problem]:
    """Line numbers of records read from the middle of a file, counted from the file's start."""
    for rec in records:
        m = _LINE.match(rec.where)
        if m:
            rec.where = f"line {int(m[1]) + before}"
        yield rec


def _tail_hash_of(fh: BinaryIO, offset: int) -> bytes:
    """The hash of the TAIL bytes before `offset`: unchanged while a file is only appended to."""
    start = max(0, offset - TAIL)
    fh.seek(start)
    return hashlib.sha256(fh.read(offset - start)).digest()
