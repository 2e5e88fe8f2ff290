"""Files uploaded in the app, imported: staged, checked against the app's limits and targets, and reported.

Where the app may write and how much it may upload are ingest/targets.py; this module stages the uploaded
files, runs the import and words its report for the Import page.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from horizonlens.errors import HorizonLensError, ImportFailed
from horizonlens.ingest.pipeline import import_paths
from horizonlens.ingest.targets import check_uploads, upload_target
from horizonlens.storage.location import CorpusPath, as_location

MESSAGES_SHOWN = 100  # notices and problems each listed on the page; the rest are counted


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the name the browser gave it (only its last part is used) and its bytes."""

    name: str
    data: bytes | memoryview


@dataclass
class UploadReport:
    """What an app import did, worded for the page: the summary line, then notices and problems."""

    into: CorpusPath
    summary: str
    notices: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    new_corpus: bool = False  # the import went to another corpus than the current one


def import_uploads(uploads: Sequence[Upload], typed_target: str, current: Path | str, data_home: Path | str,
                   fmt: str = "auto", replace: bool = False, strict: bool = False,
                   agent: str | None = None) -> UploadReport:
    """Import uploaded files into the corpus the app may write to; ImportFailed (or another HorizonLensError) if not.

    The files are staged in a temporary folder under their own names (never their path part), and messages
    name them without that folder.
    """
    check_uploads([memoryview(up.data).nbytes for up in uploads])
    into = upload_target(typed_target, current, data_home)
    with tempfile.TemporaryDirectory(prefix="horizonlens-upload-") as tmp:
        paths = []
        for i, up in enumerate(uploads):
            dest = Path(tmp) / f"{i:03d}-{Path(up.name).name}"  # the numbered prefix keeps two same names apart
            dest.write_bytes(up.data)
            paths.append(dest)

        def unstaged(message: object) -> str:
            return str(message).replace(tmp + "/", "")

        try:
            report = import_paths(paths, into, fmt=fmt, replace=replace, strict=strict, agent=agent)
        except HorizonLensError as exc:
            raise ImportFailed(unstaged(exc)) from exc
    problems = [unstaged(p) for p in report.problems[:MESSAGES_SHOWN]]
    if len(report.problems) > MESSAGES_SHOWN:
        problems.append(f"… and {len(report.problems) - MESSAGES_SHOWN} more problems")
    problems += ["Conflict: " + unstaged(c) for c in report.conflicts[:MESSAGES_SHOWN]]
    if len(report.conflicts) > MESSAGES_SHOWN:
        problems.append(f"… and {len(report.conflicts) - MESSAGES_SHOWN} more conflicts")
    return UploadReport(into=into, summary=report.summary(),
                        notices=[unstaged(n) for n in report.notices[:MESSAGES_SHOWN]], problems=problems,
                        new_corpus=str(into) != str(as_location(str(current))))
