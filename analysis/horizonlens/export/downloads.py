"""Exports made from the app: written under the server's exports folder and offered as one zip download.

`export_selection` is the one entry point the app's Explore action calls (a server that checks roles wraps
this function). The export folder is named after the corpus and a digest of the options, so the same
selection exported again replaces its previous export. The download is bounded: an export larger than
`MAX_DOWNLOAD_BYTES` stays on the server, and the page says where.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from horizonlens.export.selection import ExportOptions
from horizonlens.export.training import ExportReport, export_runs
from horizonlens.query.store import CorpusStore

MAX_APP_RUNS = 20_000  # runs one export from the app may hold; more is a job for `horizonlens export`
MAX_DOWNLOAD_BYTES = 256 << 20  # the zip offered for download
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)  # every zip entry's timestamp: the same export zips to the same bytes


@dataclass
class ExportDownload:
    """An export made from the app: its report and, when small enough, the zip of its folder."""

    report: ExportReport
    zip_name: str
    zip_bytes: bytes | None  # None: larger than MAX_DOWNLOAD_BYTES (the files stay in report.target)


def export_folder_name(store: CorpusStore, options: ExportOptions) -> str:
    """`<corpus>-<format>-<digest of the options>`: one folder per distinct export of a corpus."""
    digest = hashlib.sha256(json.dumps(options.describe(), sort_keys=True, default=str).encode()).hexdigest()[:10]
    corpus = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(store.root).rstrip("/").rsplit("/", 1)[-1])[:60] or "corpus"
    return f"{corpus}-{options.format}-{digest}"


def zip_folder(folder: Path) -> bytes:
    """The folder's files in one zip (deflated; fixed timestamps, names sorted)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            info = zipfile.ZipInfo(f"{folder.name}/{path.name}", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            with path.open("rb") as src, zf.open(info, "w") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
    return buf.getvalue()


def export_selection(store: CorpusStore, options: ExportOptions, exports_dir: Path | str) -> ExportDownload:
    """Export the runs `options` select into `exports_dir/<name>` and zip them for download (if small enough).

    The app's bound applies (at most MAX_APP_RUNS runs); ExportError says what to do instead.
    """
    if options.max_runs is None or options.max_runs > MAX_APP_RUNS:
        options.max_runs = MAX_APP_RUNS
    name = export_folder_name(store, options)
    report = export_runs(store, Path(exports_dir) / name, options)
    size = sum(p.stat().st_size for p in report.target.iterdir() if p.is_file())
    data = zip_folder(report.target) if size <= MAX_DOWNLOAD_BYTES else None
    if data is not None and len(data) > MAX_DOWNLOAD_BYTES:
        data = None
    return ExportDownload(report, f"{name}.zip", data)
