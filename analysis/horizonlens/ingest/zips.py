"""Zip archives (Inspect AI `.eval` logs), read member by member as streams with caps against zip bombs.

The archive's directory is read with `zipfile`; each member's bytes are then read and decompressed
here, a piece at a time, so that no member is ever held whole and every way a member can be unreadable
is that member's `Problem` (the members after it still import):

- compression: stored, deflate, deflate64 (`inflate64`, as inspect_ai's own reader supports) and
  zstd (`zstandard`, zip method 93), bzip2; other methods are reported as unsupported;
- an encrypted member, a damaged directory entry, a truncated archive, bad compressed data or a CRC
  mismatch: reported for that member;
- a member whose declared or actual size passes `MAX_MEMBER_BYTES`, or that expands more than
  `MAX_RATIO` times its compressed size (once past `RATIO_GRACE`), is skipped as soon as that is known:
  "expands beyond N MB; skipped". All members together may expand to `MAX_ARCHIVE_BYTES`.
"""

from __future__ import annotations

import bz2
import struct
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import IO, cast

from horizonlens.errors import RecordError
from horizonlens.ingest.readers import MIB, Problem, Raw, records_from_chunks

MAX_MEMBER_BYTES = 256 << 20  # one member, decompressed
MAX_RATIO = 200  # decompressed / compressed size of one member ...
RATIO_GRACE = 8 << 20  # ... checked once the member has expanded past this
MAX_ARCHIVE_BYTES = 4 << 30  # all members of one archive, decompressed
PIECE = 1 << 16  # compressed bytes read at a time
OUT = 1 << 20  # decompressed bytes produced at a time (where the decompressor can bound it)
DEFLATE64_PIECE = 1 << 12  # deflate64 cannot bound its output: feed small pieces (at most ~1000x each)
METHODS = {0: "stored", 8: "deflate", 9: "deflate64", 12: "bzip2", 14: "lzma", 93: "zstd", 99: "AES"}
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, struct.error,
               NotImplementedError, OverflowError, UnicodeDecodeError)


class _Slice:
    """A read-only file over `length` bytes of `fh` from `start` (one member's compressed data)."""

    def __init__(self, fh: IO[bytes], start: int, length: int):
        self.fh, self.pos, self.left = fh, start, length

    def read(self, n: int | None = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        if n <= 0:
            return b""
        self.fh.seek(self.pos)
        data = self.fh.read(n)
        self.pos += len(data)
        self.left -= len(data)
        if len(data) < n:
            raise RecordError("truncated archive: the member's data is cut off")
        return data

    def pieces(self, size: int = PIECE) -> Iterator[bytes]:
        while piece := self.read(size):
            yield piece


def _stored(raw: _Slice) -> Iterator[bytes]:
    yield from raw.pieces()


def _deflate(raw: _Slice) -> Iterator[bytes]:
    d = zlib.decompressobj(-15)
    for piece in raw.pieces():
        while piece:
            yield d.decompress(piece, OUT)
            piece = d.unconsumed_tail
    yield d.flush()


def _deflate64(raw: _Slice) -> Iterator[bytes]:
    import inflate64

    inflater = inflate64.Inflater()
    for piece in raw.pieces(DEFLATE64_PIECE):
        yield inflater.inflate(piece)


def _bzip2(raw: _Slice) -> Iterator[bytes]:
    d = bz2.BZ2Decompressor()
    for piece in raw.pieces():
        yield d.decompress(piece, OUT)
        while not d.eof and not d.needs_input:
            yield d.decompress(b"", OUT)


def _zstd(raw: _Slice) -> Iterator[bytes]:
    import zstandard

    with zstandard.ZstdDecompressor().stream_reader(cast(IO[bytes], raw), read_size=PIECE, read_across_frames=True,
                                                    closefd=False) as reader:
        while out := reader.read(OUT):
            yield out


_DECODERS: dict[int, Callable[[_Slice], Iterator[bytes]]] = {
    0: _stored, 8: _deflate, 9: _deflate64, 12: _bzip2, 93: _zstd}


def _decode_errors() -> tuple[type[BaseException], ...]:
    import zstandard

    return (zlib.error, OSError, EOFError, ValueError, RuntimeError, zstandard.ZstdError)


class ArchiveBudget:
    """What an archive may still expand to, over all its members."""

    def __init__(self, total: int = MAX_ARCHIVE_BYTES) -> None:
        self.total = total
        self.left = total


def member_chunks(fh: IO[bytes], info: zipfile.ZipInfo, size: int, budget: ArchiveBudget,
                  limit: int = MAX_MEMBER_BYTES) -> Generator[bytes, None, None]:
    """The decompressed bytes of one member, checked against the caps and its CRC (RecordError if not).

    `limit`: the most one member may expand to (the caller's own cap, when lower than MAX_MEMBER_BYTES).
    """
    if info.flag_bits & 0x41 or info.compress_type == 99:
        raise RecordError("encrypted (password-protected) member; skipped")
    decode = _DECODERS.get(info.compress_type)
    if decode is None:
        name = METHODS.get(info.compress_type, "unknown")
        raise RecordError(f"compression method {info.compress_type} ({name}) is not supported; skipped")
    if info.file_size > limit:
        raise RecordError(f"expands beyond {limit / MIB:g} MB (declared {info.file_size / MIB:,.0f} MB); skipped")
    fh.seek(info.header_offset)
    head = fh.read(30)
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        raise RecordError("damaged archive: the member's local header is missing")
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    if start + info.compress_size > size:
        raise RecordError("truncated archive: the member's data is cut off")
    total, crc = 0, 0
    try:
        for out in decode(_Slice(fh, start, info.compress_size)):
            total += len(out)
            if total > limit or (total > RATIO_GRACE and total > MAX_RATIO * max(info.compress_size, 1)):
                reached = min(limit, max(RATIO_GRACE, MAX_RATIO * info.compress_size))
                raise RecordError(f"expands beyond {reached / MIB:,.0f} MB (more than {MAX_RATIO}x its compressed "
                                  "size, or past the member limit); skipped")
            if total > budget.left:
                raise RecordError(f"the archive expands beyond {budget.total / MIB:,.0f} MB; skipped")
            crc = zlib.crc32(out, crc)
            yield out
    except _decode_errors() as exc:
        raise RecordError(f"damaged compressed data ({type(exc).__name__}: {str(exc)[:120]}); skipped") from exc
    finally:
        budget.left -= total
    if total != info.file_size:
        raise RecordError(f"damaged member: {total:,} bytes, but the archive's directory says {info.file_size:,}")
    if crc != info.CRC:
        raise RecordError("CRC check failed: the member is damaged; skipped")


def read_members(path: Path, choose: Callable[[list[str]], list[str]]) -> Iterator[Raw | Problem]:
    """One record per chosen JSON member of the zip at `path` (where = member name); problems per member."""
    file = str(path)
    try:
        zf = zipfile.ZipFile(path)
    except ZIP_ERRORS as exc:
        yield Problem(file, "file", f"not a readable zip archive ({type(exc).__name__}: {str(exc)[:160]})")
        return
    budget = ArchiveBudget()
    with zf, path.open("rb") as fh:
        size = path.stat().st_size
        infos: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            infos.setdefault(info.filename, info)
        for name in choose(list(infos)):
            if budget.left <= 0:
                yield Problem(file, name, f"the archive expands beyond {MAX_ARCHIVE_BYTES / MIB:,.0f} MB; "
                                          "this and later members skipped")
                return
            try:
                yield from records_from_chunks(member_chunks(fh, infos[name], size, budget), file, "value", name)
            except RecordError as exc:
                yield Problem(file, name, str(exc))
