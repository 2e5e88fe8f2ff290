"""Where a corpus lives: a local directory (`pathlib.Path`) or a prefix in S3-compatible object storage.

A location is parsed once, where it enters (the CLI, the app's state, `open_store`), by `as_location`:
`s3://bucket/prefix` becomes an `ObjectPath`, anything else a `Path`. An object key is normalised when an
`ObjectPath` is made: `.`, `..` and empty segments are refused, so one object has one spelling, a location
cannot climb out of its bucket, and everything named after a location (its lock above all) is the same
however the user spelled it. An `ObjectPath` offers the few
`pathlib.Path` operations the corpus code uses (`/`, `exists`, `read_bytes`, `iterdir`, `stat`, ...) over
pyarrow's own `S3FileSystem`, so most code reads the same for both; what differs (locks, atomic
replacement, how DuckDB scans files) branches on `is_remote`.

Credentials come from the standard AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL` for S3-compatible servers) and never appear in a
message: every storage error goes through `redact`, and a URI that carries credentials is refused.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Iterator, Union
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from horizonlens.errors import CorpusError

SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_FILESYSTEMS: dict[tuple[str, ...], Any] = {}


def redact(text: str) -> str:
    """`text` with every credential from the environment replaced by ***."""
    for var in SECRET_VARS:
        value = os.environ.get(var)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _endpoint() -> tuple[str | None, str]:
    """(host[:port] or None for AWS itself, scheme) from AWS_ENDPOINT_URL."""
    url = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    if not url:
        return None, "https"
    parts = urlsplit(url if "://" in url else f"https://{url}")
    return parts.netloc, parts.scheme or "https"


def s3_filesystem() -> Any:
    """Pyarrow's S3 filesystem configured from the AWS environment variables (one per configuration)."""
    from pyarrow import fs as pafs

    endpoint, scheme = _endpoint()
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    key = os.environ.get("AWS_ACCESS_KEY_ID", "")
    # the cache key holds a digest of the credentials, not the credentials
    ident = (endpoint or "", scheme, region, hashlib.sha256(
        "\0".join(os.environ.get(v, "") for v in SECRET_VARS).encode()).hexdigest())
    if ident not in _FILESYSTEMS:
        kwargs: dict[str, Any] = {"region": region, "scheme": scheme}
        if endpoint:
            kwargs["endpoint_override"] = endpoint
        if key:
            kwargs.update(access_key=key, secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
                          session_token=os.environ.get("AWS_SESSION_TOKEN") or None)
        _FILESYSTEMS[ident] = pafs.S3FileSystem(**kwargs)
    return _FILESYSTEMS[ident]


class StorageError(CorpusError, OSError):
    """Object storage refused or failed a request; the message names the location, never a credential.

    An OSError too, so code that treats an unreadable file as damaged (and moves on) does the same here.
    """


@dataclass(frozen=True)
class _Stat:
    """The fields of os.stat_result the corpus code reads."""

    st_size: int
    st_mtime_ns: int
    st_ino: int = 0


class ObjectPath:
    """A key prefix in an S3 bucket (`s3://bucket/prefix/...`), with the pathlib.Path operations corpora use."""

    is_remote = True

    def __init__(self, key: str):
        self.key = normalise_key(key)  # "bucket/prefix/...", as pyarrow's S3FileSystem names it

    @classmethod
    def from_uri(cls, uri: str) -> ObjectPath:
        """Parse `s3://bucket/prefix`; a URI with credentials in it is refused (without repeating them)."""
        parts = urlsplit(uri)
        if parts.scheme != "s3":
            raise CorpusError(f"unsupported storage scheme {parts.scheme!r}: use a local path or s3://bucket/prefix")
        if "@" in parts.netloc or parts.query or parts.fragment:
            raise CorpusError("an s3:// location must be s3://bucket/prefix; put credentials in the AWS_* environment "
                              "variables, never in the location")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", parts.netloc):
            raise CorpusError(f"s3://{parts.netloc}: not a valid bucket name")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        return cls(f"{parts.netloc}/{path.rstrip('/')}" if path.strip("/") else parts.netloc)

    @property
    def fs(self) -> Any:
        """The pyarrow filesystem this path lives on."""
        return s3_filesystem()

    # --- pathlib-like ---------------------------------------------------------------------------
    def __truediv__(self, part: str | PurePosixPath) -> ObjectPath:
        part = str(part)
        if not part or part == ".":
            return self
        if ".." in part.split("/"):
            raise CorpusError(f"{self}: path {part[:200]!r} leaves the corpus")
        return ObjectPath(f"{self.key}/{part.rstrip('/')}")

    def __str__(self) -> str:
        return f"s3://{self.key}"

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and other.key == self.key

    def __hash__(self) -> int:
        return hash(("s3", self.key))

    @property
    def name(self) -> str:
        """The last part of the key."""
        return self.key.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        """The name without its suffix."""
        return PurePosixPath(self.name).stem

    @property
    def parent(self) -> ObjectPath:
        """The prefix one level up."""
        return ObjectPath(self.key.rsplit("/", 1)[0]) if "/" in self.key else self

    @property
    def parts(self) -> tuple[str, ...]:
        """The key's parts, bucket first."""
        return tuple(self.key.split("/"))

    def as_posix(self) -> str:
        """The URI."""
        return str(self)

    def resolve(self) -> ObjectPath:
        """Already absolute."""
        return self

    def relative_to(self, other: ObjectPath) -> PurePosixPath:
        """The key below `other`'s."""
        if not (self.key + "/").startswith(other.key + "/"):
            raise ValueError(f"{self} is not under {other}")
        return PurePosixPath(self.key[len(other.key):].lstrip("/") or ".")

    def _info(self) -> Any:
        return _call(self, lambda: self.fs.get_file_info(self.key))

    def exists(self) -> bool:
        """An object, or a prefix with objects under it."""
        from pyarrow import fs as pafs

        return bool(self._info().type != pafs.FileType.NotFound)

    def is_file(self) -> bool:
        """An object."""
        from pyarrow import fs as pafs

        return bool(self._info().type == pafs.FileType.File)

    def is_dir(self) -> bool:
        """A prefix with objects under it (object stores have no empty folders)."""
        from pyarrow import fs as pafs

        return bool(self._info().type == pafs.FileType.Directory)

    def stat(self) -> _Stat:
        """Size and modification time (a HEAD request)."""
        info = self._info()
        if info.size is None:
            raise FileNotFoundError(str(self))
        return _Stat(int(info.size), int(info.mtime_ns or 0))

    def _list(self, recursive: bool) -> list[Any]:
        from pyarrow import fs as pafs

        selector = pafs.FileSelector(self.key, allow_not_found=True, recursive=recursive)
        return list(_call(self, lambda: self.fs.get_file_info(selector)))

    def iterdir(self) -> Iterator[ObjectPath]:
        """Objects and prefixes directly below."""
        for info in self._list(recursive=False):
            yield ObjectPath(info.path)

    def subdirs(self) -> list[ObjectPath]:
        """Prefixes directly below (the folders of a listing), in one request."""
        from pyarrow import fs as pafs

        return [ObjectPath(i.path) for i in self._list(recursive=False) if i.type == pafs.FileType.Directory]

    def glob(self, pattern: str) -> Iterator[ObjectPath]:
        """Direct children whose name matches."""
        return (p for p in self.iterdir() if fnmatch.fnmatch(p.name, pattern))

    def rglob(self, pattern: str) -> Iterator[ObjectPath]:
        """Objects anywhere below whose name matches (one listing)."""
        from pyarrow import fs as pafs

        for info in self._list(recursive=True):
            if info.type == pafs.FileType.File and fnmatch.fnmatch(info.base_name, pattern):
                yield ObjectPath(info.path)

    def open(self, mode: str = "rb") -> IO[bytes]:
        """A reader (random access) or a writer (the object appears, whole, when it is closed)."""
        if mode == "rb":
            return _call(self, lambda: self.fs.open_input_file(self.key))
        if mode == "wb":
            return _call(self, lambda: self.fs.open_output_stream(self.key))
        raise ValueError(f"mode {mode!r} is not supported on object storage")

    def read_bytes(self) -> bytes:
        """The whole object."""
        with self.open("rb") as fh:
            return fh.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        """The whole object, decoded."""
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        """Replace the object in one PUT: readers see the old or the new bytes, never a mix."""
        with self.open("wb") as fh:
            fh.write(data)
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        """Replace the object with this text."""
        return self.write_bytes(text.encode(encoding))

    def unlink(self, missing_ok: bool = False) -> None:
        """Delete the object."""
        from pyarrow import fs as pafs

        if missing_ok and self._info().type == pafs.FileType.NotFound:
            return
        _call(self, lambda: self.fs.delete_file(self.key))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: prefixes exist when objects do."""


CorpusPath = Union[Path, ObjectPath]


def normalise_key(key: str) -> str:
    """`bucket/prefix/...` with no `.`, `..` or empty segments (one trailing slash is dropped); CorpusError if not."""
    text = key[:-1] if key.endswith("/") else key
    parts = text.split("/")
    bad = next((p for p in parts if p in ("", ".", "..")), None)
    if bad is not None or "\x00" in text:
        what = "climbs out with '..'" if bad == ".." else "has an empty or '.' segment" if bad is not None \
            else "has a NUL character"
        raise CorpusError(f"s3://{text[:200]}: not a normalised object location (it {what}); spell it "
                          "s3://bucket/prefix with each folder named once")
    return text


def as_location(value: str | os.PathLike[str] | ObjectPath) -> CorpusPath:
    """Parse a corpus location once: `s3://bucket/prefix` or a local path."""
    if isinstance(value, ObjectPath):
        return value
    text = os.fspath(value)
    if isinstance(value, Path) and re.match(r"^s3:/[^/]", text):
        raise CorpusError(f"{text}: an s3:// location was parsed as a local path (pass it as a string)")
    scheme = _SCHEME.match(text)
    if scheme:
        return ObjectPath.from_uri(text)
    return Path(text)


def is_remote(path: CorpusPath) -> bool:
    """Does this location live in object storage?"""
    return isinstance(path, ObjectPath)


def _call(path: ObjectPath, fn: Any) -> Any:
    """Run a storage call; its errors become CorpusError naming the location, credentials redacted."""
    try:
        return fn()
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(redact(f"{path}: object storage error ({exc})")) from None


# --- Parquet through the seam ---------------------------------------------------------------------
def _source(path: CorpusPath) -> tuple[str, Any]:
    return (path.key, path.fs) if isinstance(path, ObjectPath) else (str(path), None)


def _read(path: CorpusPath, fn: Any) -> Any:
    if isinstance(path, ObjectPath):
        return _call(path, fn)
    return fn()


def read_schema(path: CorpusPath) -> pa.Schema:
    """The schema in a Parquet footer."""
    where, fs = _source(path)
    return _read(path, lambda: pq.read_schema(where, filesystem=fs))


def read_metadata(path: CorpusPath) -> Any:
    """A Parquet footer."""
    where, fs = _source(path)
    return _read(path, lambda: pq.read_metadata(where, filesystem=fs))


def read_table(path: CorpusPath, columns: list[str] | None = None, filters: Any = None) -> pa.Table:
    """A whole Parquet file (or these columns of it; `filters` as pyarrow.parquet.read_table takes them)."""
    where, fs = _source(path)
    return _read(path, lambda: pq.read_table(where, columns=columns, filters=filters, filesystem=fs))


def arrow_dataset(paths: list[CorpusPath], schema: pa.Schema | None = None, partition_base: CorpusPath | None = None
                  ) -> Any:
    """A pyarrow dataset over Parquet objects, for DuckDB to scan (projection and filters are pushed down)."""
    import pyarrow.dataset as pads

    keys = [_source(p)[0] for p in paths]
    fs = _source(paths[0])[1] if paths else None
    kwargs: dict[str, Any] = {"filesystem": fs, "format": "parquet", "schema": schema}
    if partition_base is not None:
        kwargs.update(partitioning="hive", partition_base_dir=_source(partition_base)[0])
    return _read(paths[0], lambda: pads.dataset(keys, **kwargs)) if paths else pads.dataset(keys, **kwargs)
