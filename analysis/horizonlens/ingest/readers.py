"""Reading source files record by record in bounded memory: JSON Lines, JSON arrays, single JSON values.

A *record* is one JSON value that a format converts into one or more trajectories. Every byte of a
file passes once through a `Splitter`, which finds where each record starts and ends without parsing
it (string state, escapes and bracket depth, vectorised with numpy) and enforces the limits below;
each record's bytes are then parsed by `json.loads`. So memory is about one record (after cuts), time
is linear in the file, and one bad record is reported while the records beside it still import:

- a string value longer than `MAX_STRING_BYTES` is cut there and ends with `cut_note()` (the record is
  imported, and the import report says which record was cut);
- a record nested deeper than `MAX_DEPTH`, larger than `MAX_RECORD_BYTES`, not UTF-8, not JSON, or
  with a number Python cannot read (more than 4,300 digits) is a `Problem` with its file, line or
  record number and reason;
- in a JSON Lines file every line stands alone: a garbage line or invalid UTF-8 is that line's problem.

Why not an incremental parser such as ijson: its C backend crashes the interpreter on an integer of
more than 4,300 digits and takes time quadratic in nesting depth, so it would need this same guard in
front of it; with the guard, `json.loads` per record is enough.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

CHUNK = 1 << 20  # bytes read at a time
MAX_STRING_BYTES = 16 << 20  # a longer string value (its JSON text) is cut here, with a note
MAX_DEPTH = 100  # arrays/objects nested deeper than this: the record is reported, not imported
MAX_RECORD_BYTES = 256 << 20  # one record's JSON text, after cuts
MAX_PROBLEMS_PER_FILE = 1000  # past this many, a file is given up (it is most likely not a log at all)

Mode = Literal["array", "lines", "value"]
MIB = float(1 << 20)


@dataclass
class Problem:
    """A record that could not be imported: where, and why."""

    file: str
    where: str  # "line 12", "record 3", "file", or a zip member's name
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.reason}"


@dataclass
class Raw:
    """One parsed record, where it came from, and the source sizes of string values that were cut."""

    value: Any
    file: str
    where: str
    cuts: list[int] = field(default_factory=list)  # bytes in the source of each string cut at MAX_STRING_BYTES
    agent: str | None = None  # the agent the user named for records that do not name theirs (`import --agent`)


def cut_note(source_bytes: int) -> str:
    """The text that ends a string value cut at `MAX_STRING_BYTES` (plain ASCII, valid inside JSON)."""
    return f" ... [cut by Horizon Lens at {MAX_STRING_BYTES / MIB:g} MB; the source had {source_bytes / MIB:.1f} MB]"


# --- finding records --------------------------------------------------------------------------------
_STRING_REST = re.compile(rb'(?:[^"\\]++|\\.)*+"', re.S)  # the rest of an open string, to its closing quote
_STRING_BODY = re.compile(rb'(?:[^"\\]++|\\u[0-9a-fA-F]{4}|\\[^u])*+', re.S)  # whole chars, escapes
_ESCAPE = re.compile(rb"\\.", re.S)
_DELTA = np.zeros(256, dtype=np.int8)  # how each byte changes bracket depth (outside strings)
_DELTA[[ord("["), ord("{")]] = 1
_DELTA[[ord("]"), ord("}")]] = -1
_MATTERS = np.zeros(256, dtype=bool)  # the bytes whose positions the scan needs: quote, brackets, comma
_MATTERS[[ord('"'), ord("["), ord("{"), ord("]"), ord("}"), ord(",")]] = True
_VALUE_START = frozenset(b'{["-0123456789tfn')
_WHITESPACE = b" \t\r\n"


@dataclass
class _Record:
    """The bytes of the record being read, or why it is being skipped."""

    start: int  # line number (lines mode) or record index
    pieces: list[bytes] = field(default_factory=list)
    size: int = 0
    bad: str | None = None
    cuts: list[int] = field(default_factory=list)
    started: bool = False  # a non-whitespace byte was seen


class Splitter:
    """Splits a JSON byte stream into records (see the module docstring); feed chunks, collect results.

    `mode` is "array" (the elements of one top-level array), "lines" (one record per line) or "value"
    (the whole stream is one record). `feed` and `close` return finished records as `(where, bytes,
    cuts)` or `Problem`s.
    """

    def __init__(self, file: str, mode: Mode, where: str | None = None):
        self.file, self.mode, self.where = file, mode, where
        self.depth = 0  # bracket depth at the current position (outside strings)
        self.in_str = False
        self.str_len = 0  # bytes of the open string so far
        self.cutting = False  # inside an over-long string: its bytes are dropped up to the closing quote
        self.dropped = 0
        self.held = b""  # an odd trailing backslash, kept until the next chunk so no escape is split
        self.array_state = "before"  # array mode: before "[", inside, after "]"
        self.rec = _Record(1 if mode == "lines" else 0)
        self.out: list[tuple[str, bytes, list[int]] | Problem] = []

    # public ------------------------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> list[tuple[str, bytes, list[int]] | Problem]:
        """Consume the next bytes of the stream; return the records they finished."""
        data = self.held + chunk
        trailing = len(data) - len(data.rstrip(b"\\")) if data.endswith(b"\\") else 0
        cut = len(data) - 1 if trailing % 2 else len(data)
        data, self.held = data[:cut], data[cut:]
        if self.mode == "lines":
            start = 0
            while (nl := data.find(b"\n", start)) >= 0:
                self._scan(data, start, nl)
                self._end_record()
                self._reset_line()
                start = nl + 1
            self._scan(data, start, len(data))
        else:
            self._scan(data, 0, len(data))
        out, self.out = self.out, []
        return out

    def close(self) -> list[tuple[str, bytes, list[int]] | Problem]:
        """The end of the stream: the last record, or why the stream ended inside one."""
        if self.held:
            data, self.held = self.held, b""
            self._scan(data, 0, len(data))
        if self.mode == "array":
            if self.array_state == "before":
                self.out.append(Problem(self.file, self._where(), "expected a JSON array"))
            elif self.array_state == "inside":
                if self.rec.started:
                    self._fail("truncated JSON: the file ends inside this record")
                    self._end_record()
                else:
                    self.out.append(Problem(self.file, self._where(), "truncated JSON: the array never closes"))
        else:
            self._end_record()
        out, self.out = self.out, []
        return out

    # records -----------------------------------------------------------------------------------------
    def _where(self) -> str:
        if self.mode == "lines":
            return f"line {self.rec.start}"
        if self.mode == "array":
            return f"record {self.rec.start}"
        return self.where or "file"

    def _fail(self, reason: str) -> None:
        if self.rec.bad is None:
            self.rec.bad = reason
            self.rec.pieces, self.rec.size = [], 0

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        if not self.rec.started:
            stripped = data.lstrip(_WHITESPACE)
            if not stripped:
                return
            self.rec.started = True
            if stripped[0] not in _VALUE_START:
                self._fail(f"not JSON (starts with {stripped[:20]!r})")
        if self.rec.bad is not None:
            return
        self.rec.size += len(data)
        if self.rec.size > MAX_RECORD_BYTES:
            self._fail(f"record larger than {MAX_RECORD_BYTES / MIB:g} MB (after cutting long strings); skipped")
            return
        self.rec.pieces.append(data)

    def _end_record(self) -> None:
        rec = self.rec
        if rec.started:
            if rec.bad is not None:
                self.out.append(Problem(self.file, self._where(), rec.bad))
            else:
                self.out.append((self._where(), b"".join(rec.pieces), rec.cuts))
        self.rec = _Record(rec.start + 1 if self.mode != "value" else 0)

    def _reset_line(self) -> None:
        self.depth, self.in_str, self.str_len, self.cutting, self.dropped = 0, False, 0, False, 0

    # scanning ----------------------------------------------------------------------------------------
    def _scan(self, data: bytes, pos: int, end: int) -> None:
        """Consume data[pos:end]: strings (cut where too long), then structure (depth, record ends)."""
        while pos < end:
            if self.in_str:
                pos = self._string(data, pos, end)
            else:
                pos = self._structure(data, pos, end)

    def _string(self, data: bytes, pos: int, end: int) -> int:
        """Inside a string: copy (or, past the limit, drop) bytes up to its closing quote."""
        m = _STRING_REST.match(data, pos, end)
        stop = m.end() - 1 if m else end  # the closing quote, or the end of this piece
        if not self.cutting:
            room = MAX_STRING_BYTES - self.str_len
            if stop - pos <= room:
                self._emit(data[pos:stop])
                self.str_len += stop - pos
            else:
                keep = _safe_cut(data, pos, pos + room)
                self._emit(data[pos:keep])
                self.cutting, self.dropped = True, stop - keep
                self.str_len += keep - pos
        else:
            self.dropped += stop - pos
        if not m:
            return end
        if self.cutting:
            self.rec.cuts.append(self.str_len + self.dropped)
            self._emit(cut_note(self.str_len + self.dropped).encode())
            self.cutting, self.dropped = False, 0
        self._emit(b'"')
        self.in_str, self.str_len = False, 0
        return stop + 1

    def _structure(self, data: bytes, pos: int, end: int) -> int:
        """Outside strings: track depth and record boundaries up to the end of the piece.

        Only the bytes that matter (quotes, brackets, commas) are looked at, as numpy arrays of their
        positions. Strings that open and close within the piece are shorter than a chunk, so never cut;
        a string still open at the end is continued by `_string` in the next call.
        """
        seg = data[pos:end]
        neutral = _ESCAPE.sub(b"__", seg) if b"\\" in seg else seg  # escapes can no longer look like quotes
        arr = np.frombuffer(neutral, dtype=np.uint8)
        at = np.flatnonzero(_MATTERS[arr])  # positions of quotes, brackets and commas
        codes = arr[at]
        quote = codes == 34
        inside = np.cumsum(quote, dtype=np.int32) & 1  # 1 from an opening quote up to its closing quote
        delta = np.where(inside == 0, _DELTA[codes], 0)
        depth = self.depth + np.cumsum(delta, dtype=np.int64)  # depth after each of those bytes
        stops = self._boundaries(codes, inside, delta, depth) if self.mode == "array" else []
        last = 0
        for k, kind in stops:
            i = int(at[k])
            self._consume(seg, last, i, at, depth)
            if kind == "open" and self.array_state == "before":
                self.array_state = "inside"
            elif kind != "open" and self.array_state == "inside":
                self._end_record()
                if kind == "close":
                    self.array_state = "after"
            last = i + 1
        self._consume(seg, last, len(seg), at, depth)
        if len(depth):
            self.depth = int(depth[-1])
        if len(inside) and inside[-1]:  # a string is still open: continue it as a string
            q = int(at[np.flatnonzero(quote)[-1]])
            self.in_str, self.str_len = True, len(seg) - q - 1
        return end

    @staticmethod
    def _boundaries(codes: np.ndarray, inside: np.ndarray, delta: np.ndarray,
                    depth: np.ndarray) -> list[tuple[int, str]]:
        """Array mode: indexes (into `codes`) of the opening bracket, element separators, closing bracket."""
        before = depth - delta
        marks = [(int(k), "open") for k in np.flatnonzero((delta == 1) & (before == 0))]
        marks += [(int(k), "sep") for k in np.flatnonzero((codes == 44) & (inside == 0) & (depth == 1))]
        marks += [(int(k), "close") for k in np.flatnonzero((delta == -1) & (depth == 0))]
        return sorted(marks)

    def _consume(self, seg: bytes, a: int, b: int, at: np.ndarray, depth: np.ndarray) -> None:
        """Bytes seg[a:b] belong to the current record (or lie outside any, in array mode)."""
        if a >= b:
            return
        if self.mode == "array" and self.array_state != "inside":
            junk = seg[a:b].strip(_WHITESPACE + b"\xef\xbb\xbf")
            if junk and self.array_state == "after":
                self.out.append(Problem(self.file, "file", f"data after the end of the array ({junk[:20]!r})"))
                self.array_state = "junk"
            return
        ka, kb = np.searchsorted(at, [a, b])
        base = 1 if self.mode == "array" else 0
        if self.rec.bad is None and kb > ka and int(depth[ka:kb].max()) - base > MAX_DEPTH:
            self._fail(f"nested deeper than {MAX_DEPTH} levels")
        self._emit(seg[a:b])


def _safe_cut(data: bytes, pos: int, at: int) -> int:
    """A cut position at or before `at` that splits neither an escape sequence nor a UTF-8 character.

    `data[pos:]` is string content that starts outside any escape (a chunk never ends inside one).
    """
    m = _STRING_BODY.match(data, pos, at)
    at = m.end() if m else pos
    while at > pos and (data[at] & 0xC0) == 0x80:  # do not end inside a multi-byte character
        at -= 1
    return at


# --- files and streams ------------------------------------------------------------------------------
def _looks_binary(head: bytes) -> bool:
    """Mostly control bytes or invalid UTF-8: not a text file (a few bad bytes are single bad lines)."""
    if not head:
        return False
    control = sum(head.count(bytes([c])) for c in (*range(0, 9), 11, *range(14, 32)))
    invalid = head.decode("utf-8", errors="replace").count("\ufffd")
    return control + invalid > 0.3 * len(head)


def sniff(path: Path) -> str:
    """'zip', 'parquet', 'array', 'lines', 'value', 'binary' or 'empty', from the first bytes (and suffix) of a file."""
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"PAR1"):
        return "parquet"
    stripped = head.lstrip(b"\xef\xbb\xbf" + _WHITESPACE)
    if not stripped:
        return "empty"
    if _looks_binary(head):
        return "binary"
    if path.suffix == ".jsonl":
        return "lines"
    if stripped.startswith(b"["):
        return "array"
    if stripped.startswith(b"{"):
        first, newline, rest = stripped.partition(b"\n")
        return "lines" if newline and rest.strip() and _is_json(first) else "value"
    return "lines"  # not a JSON value: read line by line, so every good line still imports


def _is_json(text: bytes) -> bool:
    try:
        json.loads(text)
        return True
    except (ValueError, RecursionError):
        return False


def parse(file: str, where: str, data: bytes, cuts: list[int]) -> Raw | Problem:
    """One record's bytes as a `Raw`, or the reason they are not JSON."""
    try:
        return Raw(json.loads(data), file, where, cuts)
    except UnicodeDecodeError as exc:
        return Problem(file, where, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    except ValueError as exc:
        msg = str(exc)
        if "integer string conversion" in msg:  # Python refuses ints of more than 4,300 digits
            return Problem(file, where, "a number with more than 4,300 digits")
        return Problem(file, where, f"not valid JSON ({msg[:160]})")
    except RecursionError:  # cannot happen below MAX_DEPTH; kept so a lowered recursion limit stays a problem
        return Problem(file, where, f"nested deeper than {MAX_DEPTH} levels")


def records_from_chunks(chunks: Iterable[bytes], file: str, mode: Mode,
                        where: str | None = None) -> Iterator[Raw | Problem]:
    """The records of a byte stream (a file, a zip member), one at a time; see the module docstring."""
    splitter = Splitter(file, mode, where)
    problems = 0
    stream = iter(chunks)
    while True:
        chunk = next(stream, None)
        found = splitter.feed(chunk) if chunk is not None else splitter.close()
        for item in found:
            rec = item if isinstance(item, Problem) else parse(file, *item)
            if isinstance(rec, Problem):
                problems += 1
                if problems > MAX_PROBLEMS_PER_FILE:
                    yield Problem(file, "file", f"more than {MAX_PROBLEMS_PER_FILE} problems; stopped reading")
                    return
            yield rec
        if chunk is None:
            return


def file_chunks(path: Path, size: int = CHUNK) -> Iterator[bytes]:
    """A file's bytes in chunks, BOM removed."""
    with path.open("rb") as fh:
        first = True
        while chunk := fh.read(size):
            if first and chunk.startswith(b"\xef\xbb\xbf"):
                chunk = chunk[3:]
            first = False
            yield chunk


def iter_records(path: Path) -> Iterator[Raw | Problem]:
    """The records of a JSON, JSON Lines or JSON-array file, chosen by content (zips: see `zips`)."""
    kind = sniff(path)
    if kind in ("array", "lines", "value"):
        mode: Mode = kind  # type: ignore[assignment]
        yield from records_from_chunks(file_chunks(path), str(path), mode)
    elif kind == "empty":
        yield Problem(str(path), "file", "empty file")
    elif kind == "zip":
        yield Problem(str(path), "file", "a zip archive (only Inspect AI .eval archives are read)")
    elif kind == "parquet":
        yield Problem(str(path), "file", "a Parquet file, not JSON text")
    else:
        yield Problem(str(path), "file", "binary data, not JSON text")


def first_value(path: Path) -> Any:
    """The first record of a file (None if it has none that parses): what a file-level sniff looks at."""
    for rec in iter_records(path):
        return rec.value if isinstance(rec, Raw) else None
    return None
