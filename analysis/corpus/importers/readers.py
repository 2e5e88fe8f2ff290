"""Reading source files record by record in bounded memory: JSONL, JSON arrays, JSON objects, zips.

A *record* is one JSON value that a format converts into one trajectory. Problems with one
record are yielded as `Problem`s so the rest of the file still imports.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

CHUNK = 1 << 20  # bytes read at a time from a JSON array
MAX_DEPTH_HINT = "JSON nested too deeply"


@dataclass
class Problem:
    """A record that could not be imported: where, and why."""

    file: str
    where: str  # "line 12", "record 3", "file"
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.reason}"


@dataclass
class Raw:
    """One parsed record and where it came from."""

    value: Any
    file: str
    where: str


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise ValueError(MAX_DEPTH_HINT) from exc


def sniff(path: Path) -> str:
    """'zip', 'jsonl', 'array', 'object', or 'binary' from the first bytes of a file."""
    with path.open("rb") as fh:
        head = fh.read(4096)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if b"\x00" in head:
        return "binary"
    try:
        text = head.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte char cut at the 4096 boundary is fine
            return "binary"
        text = head[: exc.start].decode("utf-8")
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("["):
        return "array"
    if stripped.startswith("{"):
        first_line = stripped.split("\n", 1)[0].strip()
        if path.suffix == ".jsonl" or (first_line.endswith("}") and _is_json(first_line)):
            return "jsonl"
        return "object"
    return "binary" if stripped else "empty"


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except (ValueError, RecursionError):
        return False


def iter_jsonl(path: Path) -> Iterator[Raw | Problem]:
    """One record per non-blank line of a JSON Lines file; a bad line is a problem, not the end."""
    with path.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield Raw(_loads(line.decode("utf-8")), str(path), f"line {n}")
            except (UnicodeDecodeError, ValueError) as exc:
                yield Problem(str(path), f"line {n}", f"not valid JSON ({str(exc)[:160]})")


def iter_array(path: Path) -> Iterator[Raw | Problem]:
    """Elements of a top-level JSON array, decoded one at a time (memory ~ the largest element)."""
    decoder = json.JSONDecoder()
    buf, pos, index, eof = "", 0, 0, False
    with path.open("r", encoding="utf-8", errors="strict") as fh:
        def fill() -> bool:
            nonlocal buf, pos
            chunk = fh.read(CHUNK)
            buf = buf[pos:] + chunk
            pos = 0
            return bool(chunk)

        try:
            fill()
            buf = buf.lstrip("\ufeff \t\r\n")
            if not buf.startswith("["):
                yield Problem(str(path), "file", "expected a JSON array")
                return
            pos = 1
            while True:
                while True:  # skip whitespace and commas
                    while pos < len(buf) and buf[pos] in " \t\r\n,":
                        pos += 1
                    if pos < len(buf) or eof:
                        break
                    eof = not fill()
                if pos >= len(buf):
                    yield Problem(str(path), f"record {index}", "truncated JSON: the array never closes")
                    return
                if buf[pos] == "]":
                    return
                while True:
                    try:
                        value, end = decoder.raw_decode(buf, pos)
                        break
                    except json.JSONDecodeError as exc:
                        if eof:
                            yield Problem(str(path), f"record {index}", f"truncated or invalid JSON ({exc.msg})")
                            return
                        eof = not fill()
                    except RecursionError:
                        yield Problem(str(path), f"record {index}", MAX_DEPTH_HINT)
                        return
                yield Raw(value, str(path), f"record {index}")
                index += 1
                pos = end
        except UnicodeDecodeError as exc:
            yield Problem(str(path), f"record {index}", f"not UTF-8 text ({exc.reason})")


def iter_object(path: Path) -> Iterator[Raw | Problem]:
    """A whole JSON file as one record."""
    try:
        yield Raw(_loads(path.read_text(encoding="utf-8")), str(path), "file")
    except (UnicodeDecodeError, ValueError) as exc:
        yield Problem(str(path), "file", f"not valid JSON ({str(exc)[:160]})")


def iter_zip_json(path: Path, member_prefix: str = "") -> Iterator[Raw | Problem]:
    """JSON members of a zip archive (Inspect AI .eval logs), one member at a time."""
    try:
        with zipfile.ZipFile(path) as zf:
            for name in sorted(zf.namelist()):
                if not name.endswith(".json") or not name.startswith(member_prefix):
                    continue
                try:
                    yield Raw(_loads(zf.read(name).decode("utf-8")), str(path), name)
                except (UnicodeDecodeError, ValueError) as exc:
                    yield Problem(str(path), name, f"not valid JSON ({str(exc)[:160]})")
    except zipfile.BadZipFile as exc:
        yield Problem(str(path), "file", f"not a readable zip archive ({exc})")


def iter_records(path: Path) -> Iterator[Raw | Problem]:
    """Records of any supported container, chosen by content."""
    kind = sniff(path)
    if kind == "jsonl":
        yield from iter_jsonl(path)
    elif kind == "array":
        yield from iter_array(path)
    elif kind == "object":
        yield from iter_object(path)
    elif kind == "zip":
        yield from iter_zip_json(path)
    elif kind == "empty":
        yield Problem(str(path), "file", "empty file")
    else:
        yield Problem(str(path), "file", "binary data, not JSON text")
