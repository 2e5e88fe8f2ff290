"""The one validator of dataset manifests: the corpus, replay caches (rollouts included), annotations, derived data.

A manifest is untrusted input: it may have been edited by hand, damaged, or written by another version. Every
manifest is read through `validate`, which checks what all of them share (a JSON object, a `version` counter, a
`files` list whose entries have a known table, a path that is relative, normalised, unique, inside the table's
folder and free of NUL, integer row and byte counts, a SHA-256) and then what one kind adds (`ManifestRules`: a
format version it knows, checks of the per-file `meta`). Anything wrong raises CorpusError naming the manifest and
the entry, so a caller can leave that part out and report it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from horizonlens.errors import CorpusError
from horizonlens.storage.location import CorpusPath

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 * 2**20
MAX_FILE_BYTES = 2**50  # a Parquet file larger than a petabyte is a typo or an attack
MAX_ROWS = 2**48
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset table, as the manifest records it."""

    table: str
    path: str  # relative to the dataset folder, with forward slashes
    rows: int
    bytes: int
    sha256: str | None = None  # of the whole file, recorded when written
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict[str, Any]:
        """The manifest entry."""
        out: dict[str, Any] = {"table": self.table, "path": self.path, "rows": self.rows, "bytes": self.bytes}
        if self.sha256:
            out["sha256"] = self.sha256
        if self.meta:
            out["meta"] = self.meta
        return out


EntryCheck = Callable[[DataFile, dict[str, Any], str], None]


@dataclass(frozen=True)
class ManifestRules:
    """What one kind of dataset adds to the checks every manifest gets.

    `versions`: keys that name a format version, each with the versions this code reads (a key that is absent
    reads as `None`, which is listed when such manifests are current). `upgrade`: the command that upgrades a
    dataset this code cannot read. `check`: a check of the whole manifest run first (say, an old format
    recognised by its tables); `entry`: a check of each entry, with the manifest for context.
    """

    kind: str = "dataset"
    versions: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    upgrade: str | None = None
    check: Callable[[dict[str, Any], str], None] | None = None
    entry: EntryCheck | None = None

    def too_old(self, where: str, what: str) -> CorpusError:
        """The error for data this version does not read, naming the command that upgrades it."""
        fix = f"; upgrade it with `{self.upgrade}`" if self.upgrade else ""
        return CorpusError(f"{where}: {what}, written by an older Horizon Lens{fix}")


def read_json(path: CorpusPath, limit: int = MAX_MANIFEST_BYTES) -> Any:
    """Parse a small JSON file, reading at most `limit` bytes; CorpusError says which file and why."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise CorpusError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from exc
    if len(raw) > limit:
        raise CorpusError(f"{path}: larger than {limit // 2**20} MB; not a manifest")
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CorpusError(f"{path}: not valid JSON ({str(exc)[:200]})") from exc


def check_path(path: Any, where: str) -> str:
    """A dataset-relative file path as manifests must spell it: relative, normalised, no NUL or backslash."""
    if not isinstance(path, str) or not path:
        raise CorpusError(f"{where}: a file path is not a non-empty string")
    shown = path[:200]
    if "\x00" in path or "\\" in path:
        raise CorpusError(f"{where}: file path {shown!r} has a NUL or a backslash")
    if path.startswith("/"):
        raise CorpusError(f"{where}: file path {shown!r} is absolute; it leaves the dataset folder")
    parts = path.split("/")
    if ".." in parts:
        raise CorpusError(f"{where}: file path {shown!r} leaves the dataset folder")
    if any(p in ("", ".") for p in parts):
        raise CorpusError(f"{where}: file path {shown!r} is not normalised (empty or '.' segments)")
    return path


def _count(value: Any, key: str, limit: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise CorpusError(f"{where}: '{key}' is {repr(value)[:40]}, not a whole number from 0 to {limit:,}")
    return value


def _entry(value: Any, tables: tuple[str, ...], where: str) -> DataFile:
    if not isinstance(value, dict):
        raise CorpusError(f"{where}: a 'files' entry is not an object")
    table = value.get("table")
    if not isinstance(table, str) or table not in tables:
        raise CorpusError(f"{where}: a 'files' entry names table {str(table)[:60]!r}; this dataset has "
                          f"{', '.join(tables)}")
    path = check_path(value.get("path"), where)
    if path.split("/")[0] != table or path.count("/") < 1:
        raise CorpusError(f"{where}: file path {path[:200]!r} is not inside the folder of its table {table!r}")
    sha = value.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not _SHA256.match(sha)):
        raise CorpusError(f"{where}: {path!r} has a 'sha256' that is not 64 hex digits")
    meta = value.get("meta", {})
    if not isinstance(meta, dict):
        raise CorpusError(f"{where}: {path!r} has a 'meta' that is not an object")
    return DataFile(table, path, _count(value.get("rows"), "rows", MAX_ROWS, f"{where}: {path}"),
                    _count(value.get("bytes"), "bytes", MAX_FILE_BYTES, f"{where}: {path}"), sha, meta)


def validate(manifest: Any, tables: tuple[str, ...], rules: ManifestRules, where: str) -> tuple[DataFile, ...]:
    """Check a parsed manifest (see the module docstring); its file entries, in order."""
    if not isinstance(manifest, dict):
        raise CorpusError(f"{where}: expected a JSON object")
    if rules.check is not None:
        rules.check(manifest, where)
    for key, known in rules.versions.items():
        if manifest.get(key) not in known:
            found = manifest.get(key)
            newest = max((v for v in known if isinstance(v, int)), default=None)
            if isinstance(found, int) and not isinstance(found, bool) and newest is not None and found < newest:
                raise rules.too_old(where, f"{key} {found}")
            raise CorpusError(f"{where}: {key} {repr(found)[:40]}; this Horizon Lens reads "
                              f"{' or '.join(str(v) for v in known if v is not None)}")
    _count(manifest.get("version", 0), "version", 2**62, where)
    raw = manifest.get("files")
    if raw is None:
        raise rules.too_old(where, "no file list")
    if not isinstance(raw, list):
        raise CorpusError(f"{where}: 'files' is not a list")
    files = tuple(_entry(v, tables, where) for v in raw)
    seen: set[str] = set()
    for f in files:
        if f.path in seen:  # listed twice, its rows would count twice
            raise CorpusError(f"{where}: file {f.path!r} is listed twice")
        seen.add(f.path)
        if rules.entry is not None:
            rules.entry(f, manifest, where)
    return files


def string_list(value: Any, what: str, where: str) -> list[str]:
    """A manifest value that must be a list of strings (e.g. the trajectories a file holds)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CorpusError(f"{where}: {what} is not a list of strings")
    return value


def positive_int(value: Any, what: str, limit: int, where: str) -> int:
    """A manifest value that must be a whole number from 1 to `limit`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise CorpusError(f"{where}: {what} is {repr(value)[:40]}, not a whole number from 1 to {limit:,}")
    return value
