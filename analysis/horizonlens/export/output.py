"""Where outputs are written, all at once or not at all: export folders and single files (bundles).

An export folder is written under a temporary name beside its target and renamed into place when every file
is complete, so a reader (or a trainer) never sees a half-written export; a failure removes the temporary
folder and leaves any previous export as it was. A folder that exists is replaced only if it is a previous
export (its `manifest.json` says so) or empty: anything else is refused, never overwritten. The manifest is
written with the storage room's atomic JSON writer, and a single file (a bundle) with its atomic writer.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from horizonlens.errors import CorpusError, ExportError
from horizonlens.storage import write_bytes_atomic, write_json_atomic
from horizonlens.storage.atomic import fsync_dir, fsync_path

MANIFEST = "manifest.json"
EXPORT_KIND = "horizonlens training export"
STAGING_PREFIX = ".tmp-export-"


def read_export_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a previous export in `folder`, or None if the folder holds none."""
    path = folder / MANIFEST
    try:
        if not path.is_file() or path.stat().st_size > 64 << 20:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("kind") == EXPORT_KIND else None


def check_target(target: Path) -> None:
    """Refuse a target that exists and is neither an empty folder nor a previous export (ExportError)."""
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not target.is_dir():
        raise ExportError(f"{target}: exists and is not a folder; refusing to replace it with an export")
    if any(target.iterdir()) and read_export_manifest(target) is None:
        raise ExportError(f"{target}: exists and is not a previous Horizon Lens export (no export {MANIFEST}); "
                          "refusing to write into it. Choose a new folder.")


class ExportFolder:
    """An export being written: files go into `staging`; `publish()` moves the whole folder into place."""

    def __init__(self, target: Path | str):
        self.target = Path(target).absolute()
        check_target(self.target)
        self.staging = self.target.parent / f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}-{self.target.name}"
        self.published = False

    def __enter__(self) -> ExportFolder:
        try:
            self.staging.parent.mkdir(parents=True, exist_ok=True)
            self.staging.mkdir()
        except OSError as exc:
            raise ExportError(f"{self.target.parent}: cannot write here ({exc.strerror or exc})") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.published:
            shutil.rmtree(self.staging, ignore_errors=True)

    def path(self, name: str) -> Path:
        """Where a file of the export is written while it is being made."""
        return self.staging / name

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """The manifest, last (it is what marks the folder as an export)."""
        write_json_atomic({"kind": EXPORT_KIND, **manifest}, self.staging / MANIFEST)

    def publish(self) -> Path:
        """Make the export visible under its target name (replacing a previous export); returns the target."""
        for f in self.staging.iterdir():
            fsync_path(f)
        check_target(self.target)  # still true: nobody put something else there meanwhile
        old = None
        if self.target.exists():
            old = self.target.parent / f"{STAGING_PREFIX}old-{uuid.uuid4().hex[:12]}-{self.target.name}"
            os.rename(self.target, old)
        try:
            os.rename(self.staging, self.target)
        except OSError:
            if old is not None:
                os.rename(old, self.target)
            raise
        self.published = True
        fsync_dir(self.target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.target


@contextmanager
def export_folder(target: Path | str) -> Iterator[ExportFolder]:
    """An `ExportFolder` as a context manager: unpublished work is removed when the block ends."""
    folder = ExportFolder(target)
    with folder:
        yield folder


def write_file_atomic(path: Path | str, data: bytes) -> Path:
    """Write one file whole (the storage room's atomic writer): readers see the old file or the new one."""
    path = Path(path).absolute()
    if path.is_dir():
        raise ExportError(f"{path}: is a folder; give a file name")
    if not path.parent.is_dir():
        raise ExportError(f"{path.parent}: no such folder")
    try:
        write_bytes_atomic(data, path)
    except CorpusError as exc:
        raise ExportError(str(exc)) from exc
    return path
