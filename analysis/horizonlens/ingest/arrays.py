"""NumPy `.npz` archives from elsewhere, read within bounds: each array's header is checked before its data.

`np.load` on an `.npz` decompresses whatever member it is asked for in full and trusts the header's shape,
so a 2 MB file can expand to gigabytes. `NpzFile` reads an archive the way `zips.py` reads `.eval` logs:

- only the archive's directory is read up front; members nobody asks for are never decompressed;
- `header(name)` decompresses only the first bytes of a member and parses its `.npy` header with numpy's
  own parser (whose header-size limit applies): shape, dtype, order. Object and structured dtypes are
  refused (nothing is ever unpickled), and so is a shape whose data would pass the caller's byte cap;
- `read(name, max_bytes)` then streams the member through `zips.member_chunks` (size and ratio caps, CRC)
  into one array allocated at the size the header declared; a member with more or fewer bytes than its
  header promises is damaged.

Every failure is a `RecordError` that names the member.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

import numpy as np

from horizonlens.errors import RecordError
from horizonlens.ingest.readers import MIB
from horizonlens.ingest.zips import MAX_MEMBER_BYTES, ZIP_ERRORS, ArchiveBudget, member_chunks

HEADER_MAX = 64 << 10  # bytes of a member read to find its header (numpy's own limit is 10,000)
PLAIN_KINDS = "biufcUS"  # bool, integers, floats, complex, text: dtypes that hold no Python objects


@dataclass(frozen=True)
class ArrayHeader:
    """What an `.npy` member declares: its shape and dtype, and the bytes its data takes."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int  # bytes of the magic and header before the data

    @property
    def nbytes(self) -> int:
        """The data's size in bytes, as declared."""
        count = 1
        for d in self.shape:
            count *= d
        return count * self.dtype.itemsize


class NpzFile:
    """An `.npz` archive opened for bounded reading (see the module docstring); use as a context manager."""

    def __init__(self, path: Path | str, budget: int = 4 * MAX_MEMBER_BYTES):
        self.path = Path(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
        except ZIP_ERRORS as exc:
            raise RecordError(f"not a readable .npz of plain arrays ({type(exc).__name__}: {str(exc)[:160]})") from exc
        self._fh: IO[bytes] = self.path.open("rb")
        self._size = self.path.stat().st_size
        self._budget = ArchiveBudget(budget)
        self._members: dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            if info.filename.endswith(".npy"):
                self._members.setdefault(info.filename[:-4], info)
        self._headers: dict[str, ArrayHeader] = {}

    def __enter__(self) -> NpzFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the archive."""
        self._zip.close()
        self._fh.close()

    @property
    def names(self) -> list[str]:
        """The arrays the archive holds (member names without `.npy`)."""
        return list(self._members)

    def _chunks(self, name: str, limit: int) -> Generator[bytes, None, None]:
        info = self._members.get(name)
        if info is None:
            raise RecordError(f"no `{name}` array (it has: {', '.join(sorted(self._members)) or 'nothing'})")
        return member_chunks(self._fh, info, self._size, self._budget, limit)

    def header(self, name: str) -> ArrayHeader:
        """The header of array `name`, read from the first bytes of its member (its data is not decompressed)."""
        if name in self._headers:
            return self._headers[name]
        head = bytearray()
        chunks = self._chunks(name, MAX_MEMBER_BYTES)
        try:
            for chunk in chunks:
                head += chunk
                if len(head) >= HEADER_MAX:
                    break
        except RecordError as exc:
            if not head:
                raise RecordError(f"`{name}`: {exc}") from exc
        finally:
            chunks.close()  # a generator closed early: the rest of the member is never decompressed
        found = _parse_header(name, bytes(head[:HEADER_MAX]))
        self._headers[name] = found
        return found

    def read(self, name: str, max_bytes: int) -> np.ndarray:
        """Array `name`, if its declared size is at most `max_bytes`; RecordError otherwise, or if it is damaged."""
        header = self.header(name)
        if header.nbytes > max_bytes:
            raise RecordError(f"`{name}` declares {_size(header.nbytes)} of data ({header.dtype}, shape "
                              f"{list(header.shape)}); at most {_size(max_bytes)} are read")
        declared = self._members[name].file_size
        if declared != header.offset + header.nbytes:
            raise RecordError(f"`{name}`: the archive says {declared:,} bytes where its header declares "
                              f"{header.offset + header.nbytes:,}; the member is damaged")
        out = np.empty(header.nbytes, dtype=np.uint8)
        filled, skip = 0, header.offset
        try:
            for chunk in self._chunks(name, header.offset + header.nbytes):
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                if filled + len(chunk) > header.nbytes:
                    raise RecordError("more data than its header declares")
                out[filled:filled + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
                filled += len(chunk)
        except RecordError as exc:
            raise RecordError(f"`{name}`: {exc}") from exc
        if filled != header.nbytes:
            raise RecordError(f"`{name}`: {filled:,} bytes of data where its header declares {header.nbytes:,}")
        order: Literal["C", "F"] = "F" if header.fortran_order else "C"
        return out.view(header.dtype).reshape(header.shape, order=order)


def _size(n: int) -> str:
    return f"{n / MIB:,.1f} MB" if n >= MIB else f"{n:,} bytes"


def _parse_header(name: str, head: bytes) -> ArrayHeader:
    """The `.npy` header at the start of `head` (numpy's parser; its safe literal reading and size limit)."""
    fmt = np.lib.format
    fp = io.BytesIO(head)
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fp)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unknown .npy format version {version}")
    except (ValueError, TypeError, SyntaxError, EOFError, OverflowError, MemoryError, RecursionError) as exc:
        raise RecordError(f"`{name}` is not a readable .npy array ({str(exc)[:160]})") from exc
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in PLAIN_KINDS:
        raise RecordError(f"`{name}` holds {dtype} values; only plain arrays of numbers and text are read "
                          "(nothing is unpickled)")
    if dtype.itemsize == 0:
        raise RecordError(f"`{name}` holds {dtype} values, which take no bytes")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise RecordError(f"`{name}` has an impossible shape {shape!r}")
    return ArrayHeader(name, tuple(shape), dtype, bool(fortran), fp.tell())
