"""A small zip writer for hostile archives: any compression method, flag, CRC or declared size.

`zipfile` writes only well-formed archives; these tests need archives that lie (a wrong CRC, a declared
size far from the real one, an encrypted flag) and methods it cannot write (deflate64, zstd).
"""

from __future__ import annotations

import bz2
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Member:
    name: str
    data: bytes = b""  # the uncompressed content (ignored when `compressed` is given)
    method: int = 8
    flags: int = 0
    crc: int | None = None  # None: the true CRC
    size: int | None = None  # declared uncompressed size; None: the true size
    compressed: bytes | None = None  # pre-compressed data (then `crc` and `size` must be given)


def compress(data: bytes, method: int) -> bytes:
    if method == 0:
        return data
    if method == 8:
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        return c.compress(data) + c.flush()
    if method == 9:
        import inflate64

        d = inflate64.Deflater()
        return d.deflate(data) + d.flush()
    if method == 12:
        return bz2.compress(data)
    if method == 93:
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return data  # other methods: the bytes as given (the reader must refuse them anyway)


def deflate_stream(blocks: Iterable[bytes]) -> tuple[bytes, int, int]:
    """Raw deflate of a stream of blocks: (compressed bytes, CRC, size) without holding the stream."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out, crc, size = [], 0, 0
    for block in blocks:
        out.append(c.compress(block))
        crc = zlib.crc32(block, crc)
        size += len(block)
    out.append(c.flush())
    return b"".join(out), crc, size


def repeat(block: bytes, total: int) -> Iterator[bytes]:
    for _ in range(total // len(block)):
        yield block


def write_zip(path: Path, members: list[Member]) -> Path:
    body, central = bytearray(), bytearray()
    for m in members:
        payload = m.compressed if m.compressed is not None else compress(m.data, m.method)
        crc = m.crc if m.crc is not None else zlib.crc32(m.data)
        size = m.size if m.size is not None else len(m.data)
        name = m.name.encode()
        offset = len(body)
        sizes = (min(len(payload), 0xFFFFFFFE), min(size, 0xFFFFFFFE))
        body += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 63, m.flags, m.method, 0, 0x21, crc & 0xFFFFFFFF,
                            *sizes, len(name), 0) + name + payload
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 63, 63, m.flags, m.method, 0, 0x21,
                               crc & 0xFFFFFFFF, *sizes, len(name), 0, 0, 0, 0, 0, offset) + name
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(body), 0)
    path.write_bytes(bytes(body + central + end))
    return path
