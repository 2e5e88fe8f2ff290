"""The corpora a server serves, named by their folder's name, and which folders an editor may open.

A page's URL names its corpus as `?corpus=<name>`, the corpus folder's name (never a server path), so a
link opens the same corpus for whoever the server lets in. The names come from:

- each corpus given to `serve --corpus` (the first is the default);
- each corpus inside a *folder of corpora* given to `serve --corpus` (looked up again on every request,
  so a corpus created there later is served too);
- corpora created or opened through the app while it runs (an import into a new folder, an editor
  opening a path): they are served to everyone from then on, until the server stops.

Two corpora cannot share a name: `serve` refuses that at start, and a corpus whose name is taken is not
added later. Viewers choose only among the served corpora. An editor may also open a corpus folder that
lies directly beside a served corpus, or anywhere inside an allowed folder (`serve --allow-dir`, the
folders of corpora, and `<data home>/corpora`); the owner of a local server may open any folder.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from horizonlens.corpus.files import MANIFEST
from horizonlens.errors import AccessDenied, ServerConfigError
from horizonlens.storage.access import Permission, Principal
from horizonlens.storage.location import as_location, is_remote


@dataclass(frozen=True)
class ServedCorpus:
    """One corpus a server serves: the name its URLs use and where it is."""

    name: str
    location: str  # a resolved local path, or s3://bucket/prefix


def corpus_name(location: str) -> str:
    """A corpus's name: its folder's name (the last part of an s3:// prefix)."""
    name = location.rstrip("/").rsplit("/", 1)[-1]
    if not name or name in (".", ".."):
        raise ServerConfigError(f"{location}: a served corpus needs a folder with a name")
    return name


def is_corpus(path: Path) -> bool:
    """Whether a local folder holds a corpus (has a manifest)."""
    return (path / MANIFEST).is_file()


def normalise(location: str) -> str:
    """A location as the registry compares it: local paths resolved, s3:// as written."""
    return str(as_location(location).resolve()) if not is_remote(as_location(location)) else str(as_location(location))


class CorpusRegistry:
    """The corpora one server serves (thread-safe: shared by every session of the process)."""

    def __init__(self, corpora: Iterable[ServedCorpus], roots: Iterable[str] = (), allow_dirs: Iterable[str] = ()):
        self._explicit: dict[str, ServedCorpus] = {}
        for corpus in corpora:
            self._claim(self._explicit, corpus)
        self.roots = [Path(r).resolve() for r in roots]
        self.allow_dirs = [Path(d).resolve() for d in allow_dirs]
        self._added: dict[str, ServedCorpus] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _claim(into: dict[str, ServedCorpus], corpus: ServedCorpus) -> None:
        other = into.get(corpus.name)
        if other is not None and other.location != corpus.location:
            raise ServerConfigError(f"two corpora are named {corpus.name!r}: {other.location} and {corpus.location}; "
                                    "URLs name a corpus by its folder name, so rename one folder")
        into[corpus.name] = corpus

    # --- what is served -------------------------------------------------------------------------
    def _discovered(self) -> dict[str, ServedCorpus]:
        found: dict[str, ServedCorpus] = {}
        for root in self.roots:
            try:
                children = sorted(p for p in root.iterdir() if p.is_dir() and is_corpus(p))
            except OSError:
                continue
            for child in children:
                found.setdefault(child.name, ServedCorpus(child.name, str(child.resolve())))
        return found

    def served(self) -> list[ServedCorpus]:
        """Every served corpus: those given at start first (the default first), then the others by name."""
        with self._lock:
            added = dict(self._added)
        out = dict(self._explicit)
        for name, corpus in sorted({**self._discovered(), **added}.items()):
            out.setdefault(name, corpus)
        return list(out.values())

    def names(self) -> list[str]:
        """The names URLs may use, default first."""
        return [c.name for c in self.served()]

    @property
    def default(self) -> ServedCorpus | None:
        """The corpus a URL without `?corpus=` opens."""
        served = self.served()
        return served[0] if served else None

    def location(self, name: str) -> str | None:
        """Where the corpus of that name is, or None if no corpus of that name is served."""
        return next((c.location for c in self.served() if c.name == name), None)

    def name_of(self, location: str) -> str | None:
        """The name a served location goes by, or None if it is not served."""
        location = normalise(location)
        return next((c.name for c in self.served() if c.location == location), None)

    def add(self, location: str) -> str:
        """Serve a corpus created or opened while the server runs; its name (ServerConfigError if taken)."""
        location = normalise(location)
        known = self.name_of(location)
        if known is not None:
            return known
        corpus = ServedCorpus(corpus_name(location), location)
        if self.location(corpus.name) not in (None, location):
            raise ServerConfigError(f"a corpus named {corpus.name!r} is already served from another folder; "
                                    "choose another folder name")
        with self._lock:
            self._added[corpus.name] = corpus
        return corpus.name

    # --- what a principal may open --------------------------------------------------------------
    def allowed_folders(self) -> list[Path]:
        """Folders inside which an editor may open any corpus."""
        return [*self.roots, *self.allow_dirs]

    def check_open(self, principal: Principal, location: str) -> str:
        """The normalised location if `principal` may open it; AccessDenied saying why not."""
        location = normalise(location)
        if self.name_of(location) is not None or principal.anywhere:
            return location
        if not principal.can(Permission.OPEN_PATH):
            raise AccessDenied("viewers choose among the corpora this server serves: "
                               + ", ".join(self.names()))
        if is_remote(as_location(location)):
            raise AccessDenied("only the object-storage corpora this server serves can be opened")
        path = Path(location)
        beside = {Path(c.location).parent for c in self.served() if not c.location.startswith("s3://")}
        if path.parent in beside or any(path == d or d in path.parents for d in self.allowed_folders()):
            return location
        places = [f"{d}/NAME" for d in sorted(map(str, beside))] + [f"{d}/…" for d in map(str, self.allowed_folders())]
        raise AccessDenied(f"{location} is outside the folders this server opens: " + ", ".join(places))
