"""Files uploaded in the app, imported: how many, where to, and the report the Import page shows.

Anyone who can open the app can upload, so the page must not write a corpus to an arbitrary path typed into
"Into corpus" (docs/security.md, "Untrusted files"). The CLI has no such rule: whoever runs it already has the
user's file access.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from horizonlens.corpus.files import MANIFEST, is_empty_dir
from horizonlens.errors import HorizonLensError, ImportFailed
from horizonlens.ingest.pipeline import import_paths
from horizonlens.storage.location import CorpusPath, ObjectPath, as_location, is_remote

MAX_UPLOAD_FILES = 20  # files per import from the app
MAX_UPLOAD_BYTES = 512 << 20  # all files of one import from the app together
UPLOAD_ROOT = "corpora"  # new corpora from the app may go under <data home>/corpora/
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


def check_uploads(sizes: list[int]) -> None:
    """Refuse an upload of too many files or too many bytes (ImportFailed saying the limits)."""
    if len(sizes) > MAX_UPLOAD_FILES:
        raise ImportFailed(f"{len(sizes)} files uploaded; the app imports at most {MAX_UPLOAD_FILES} at a time "
                           "(use `horizonlens import` for more)")
    if sum(sizes) > MAX_UPLOAD_BYTES:
        raise ImportFailed(f"{sum(sizes) / 2**20:,.0f} MB uploaded; the app imports at most "
                           f"{MAX_UPLOAD_BYTES / 2**20:,.0f} MB at a time (use `horizonlens import` for more)")


def upload_target(typed: str, current: Path | str, data_home: Path | str) -> Path | ObjectPath:
    """The corpus folder an app import may write to, from what was typed; ImportFailed if it may not.

    In object storage the app imports only into the current corpus (the same s3:// location).
    """
    if not typed.strip():
        raise ImportFailed("no target corpus given")
    if "://" in typed or "://" in str(current):
        location = as_location(typed.strip())
        if is_remote(location) and str(location) == str(as_location(str(current))):
            return location
        raise ImportFailed("with a corpus in object storage the app imports only into that corpus; use "
                           "`horizonlens import PATH... --into s3://...` for another one")
    current_dir = Path(current).resolve()
    candidate = Path(typed.strip())
    if not candidate.is_absolute():  # a bare name means a new corpus beside the current one
        candidate = current_dir.parent / candidate
    target = candidate.resolve()
    if target == current_dir:
        return target
    roots = [current_dir.parent, (Path(data_home) / UPLOAD_ROOT).resolve()]
    allowed = target.parent == roots[0] or roots[1] in target.parents
    if not allowed:
        raise ImportFailed(f"the app imports only into the current corpus, a new folder beside it "
                           f"({roots[0]}/NAME) or a new folder under {roots[1]}; not {target}")
    if target.exists() and ((target / MANIFEST).exists() or not is_empty_dir(target)):
        raise ImportFailed(f"{target} already exists; the app imports into the current corpus or a new folder "
                           "(open that corpus first to import into it)")
    return target


def import_uploads(uploads: Sequence[Upload], typed_target: str, current: Path | str, data_home: Path | str,
                   fmt: str = "auto", replace: bool = False, strict: bool = False) -> UploadReport:
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
            report = import_paths(paths, into, fmt=fmt, replace=replace, strict=strict)
        except HorizonLensError as exc:
            raise ImportFailed(unstaged(exc)) from exc
    problems = [unstaged(p) for p in report.problems[:MESSAGES_SHOWN]]
    if len(report.problems) > MESSAGES_SHOWN:
        problems.append(f"… and {len(report.problems) - MESSAGES_SHOWN} more problems")
    return UploadReport(into=into, summary=report.summary(),
                        notices=[unstaged(n) for n in report.notices[:MESSAGES_SHOWN]], problems=problems,
                        new_corpus=str(into) != str(as_location(str(current))))
