"""Where the app may import uploaded files, and how much it may upload (docs/security.md, "Untrusted files").

The app's Import page is reachable by anyone who can open the app, so it must not write a corpus to an
arbitrary path typed into "Into corpus". It imports into the current corpus, or creates a new corpus
in a folder that does not exist yet (or is empty) directly beside the current corpus or anywhere under
`<data home>/corpora`. Paths are resolved first, so `..` and symbolic links cannot leave those places.
The CLI has no such rule: whoever runs it already has the user's file access.
"""

from __future__ import annotations

from pathlib import Path

from horizonlens.corpus.files import MANIFEST, is_empty_dir
from horizonlens.errors import ImportFailed
from horizonlens.storage.location import ObjectPath, as_location, is_remote

MAX_UPLOAD_FILES = 20  # files per import from the app
# All files of one import from the app together; also the server's upload limit (server.maxUploadSize). The
# upload box prints it in decimal units and rounds anything above 500 MB up to "1GB": 500 reads as itself.
MAX_UPLOAD_MB = 500
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB << 20
UPLOAD_ROOT = "corpora"  # new corpora from the app may go under <data home>/corpora/


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
