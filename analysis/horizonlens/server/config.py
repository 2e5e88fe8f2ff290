"""A server's configuration: built and checked by `horizonlens serve`, handed to the app process.

`serve` checks everything before the server starts (corpora, the users file, the sign-in provider, the
bind address against `--auth`), then passes the result to the Streamlit process as JSON in one
environment variable. The app reads it back with `from_env()`; without it (the app started by AppTest or
`streamlit run`) it serves `HORIZONLENS_CORPUS` (or the bundled sample) to its local owner, as before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from horizonlens.corpus.files import read_manifest
from horizonlens.errors import CorpusError, ServerConfigError
from horizonlens.server.corpora import CorpusRegistry, ServedCorpus, corpus_name, is_corpus, normalise
from horizonlens.server.hosts import allowed_hosts, is_loopback
from horizonlens.server.users import UsersFile, load_users
from horizonlens.storage.access import NOBODY, OWNER, Principal
from horizonlens.storage.location import as_location, is_remote

ENV = "HORIZONLENS_SERVER"
FLOOR_ENV = "HORIZONLENS_FLOOR"  # set by `serve --floor`: the server serves the hello-world page, not the app


@dataclass(frozen=True)
class ServerConfig:
    """What one server serves and to whom (see `serve --help` and docs/security.md)."""

    corpora: tuple[ServedCorpus, ...] = ()  # given one by one; the first is the default
    roots: tuple[str, ...] = ()  # folders of corpora
    allow_dirs: tuple[str, ...] = ()  # folders editors may open corpora in
    auth: str | None = None  # the users file
    insecure_no_auth: bool = False  # reachable from other machines without sign-in, on purpose
    bind: str = "127.0.0.1"
    hosts: tuple[str, ...] = ()  # Host names answered
    watch: tuple[str, ...] = ()  # folders followed into the default corpus
    checkpoint: str = ""
    secrets: str | None = None  # the secrets file holding the [auth] section st.login reads

    @property
    def signs_in(self) -> bool:
        """Whether sessions must sign in before they see anything."""
        return self.auth is not None

    @property
    def open_principal(self) -> Principal:
        """Who a session is before any sign-in: nobody with sign-in, else the owner (local) or an editor."""
        if self.signs_in:
            return NOBODY
        if self.insecure_no_auth:
            return Principal.of_role("anyone", "editor")
        return OWNER

    def registry(self) -> CorpusRegistry:
        """The served corpora (build once per process: corpora added at run time live in it)."""
        return CorpusRegistry(self.corpora, self.roots, self.allow_dirs)

    def users(self) -> UsersFile:
        """The users file, read and checked (ServerConfigError says what is wrong)."""
        if self.auth is None:
            raise ServerConfigError("this server has no users file")
        return load_users(self.auth)

    def to_env(self) -> str:
        """The configuration as the JSON the app process reads."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerConfig:
        """The configuration `to_env` wrote."""
        raw: dict[str, Any] = json.loads(text)
        raw["corpora"] = tuple(ServedCorpus(**c) for c in raw.get("corpora", ()))
        for key in ("roots", "allow_dirs", "hosts", "watch"):
            raw[key] = tuple(raw.get(key, ()))
        return cls(**raw)


def from_env(fallback_corpus: str | None = None) -> ServerConfig:
    """The configuration `serve` handed over, or a local owner's server of `fallback_corpus`."""
    text = os.environ.get(ENV)
    if text:
        return ServerConfig.from_json(text)
    corpora: tuple[ServedCorpus, ...] = ()
    if fallback_corpus:
        location = normalise(fallback_corpus)
        corpora = (ServedCorpus(corpus_name(location), location),)
    return ServerConfig(corpora=corpora, checkpoint=os.environ.get("HORIZONLENS_CHECKPOINT", ""))


def served_corpora(given: Sequence[str]) -> tuple[list[ServedCorpus], list[str]]:
    """The corpora and folders of corpora given to `serve --corpus`, checked (ServerConfigError/CorpusError)."""
    corpora: list[ServedCorpus] = []
    roots: list[str] = []
    for item in given:
        location = as_location(item)
        if not is_remote(location) and Path(item).is_dir() and not is_corpus(Path(item)):
            inside = [p for p in sorted(Path(item).iterdir()) if p.is_dir() and is_corpus(p)]
            if not inside:
                raise ServerConfigError(f"{item}: neither a corpus (no manifest.json) nor a folder of corpora; "
                                        "create one with `horizonlens sample DIR`")
            roots.append(str(Path(item).resolve()))
            continue
        try:
            read_manifest(location)
        except CorpusError as exc:
            raise CorpusError(f"{exc}\n(create one with `horizonlens sample DIR`)") from None
        name = normalise(item)
        corpora.append(ServedCorpus(corpus_name(name), name))
    CorpusRegistry(corpora, roots)  # refuses two corpora of one name
    return corpora, roots


def check_exposure(bind: str, auth: str | None, insecure_no_auth: bool) -> None:
    """Refuse to serve beyond this machine without sign-in unless told to (ServerConfigError)."""
    if auth is not None and insecure_no_auth:
        raise ServerConfigError("--auth and --insecure-no-auth contradict each other; give one")
    if not is_loopback(bind) and auth is None and not insecure_no_auth:
        raise ServerConfigError(
            f"refusing to serve on {bind} without sign-in: anyone who can reach it could read every corpus, run "
            "SQL and import. Give --auth USERS_FILE (create it with `horizonlens users add USERS_FILE NAME --role "
            "editor`), or --insecure-no-auth if a proxy in front of the server already authenticates users.")


def build(corpora: Sequence[str], bind: str, auth: Path | None = None, insecure_no_auth: bool = False,
          extra_hosts: Sequence[str] = (), allow_dirs: Sequence[Path] = (), watch: Sequence[Path] = (),
          checkpoint: str = "", secrets: Path | None = None, data_home: Path | None = None) -> ServerConfig:
    """Check every option of `serve` and return the configuration (ServerConfigError/CorpusError otherwise)."""
    check_exposure(bind, str(auth) if auth else None, insecure_no_auth)
    served, roots = served_corpora(corpora)
    if auth is not None:
        users = load_users(auth)
        if users.oidc is not None:
            from horizonlens.server.oidc import check_oidc

            secrets = check_oidc(users.oidc, secrets)
    elif secrets is not None:
        raise ServerConfigError("--secrets configures sign-in through an identity provider; it needs --auth FILE "
                                "with an [oidc] section")
    for folder in [*allow_dirs, *watch]:
        if not Path(folder).is_dir():
            raise ServerConfigError(f"{folder}: not a folder")
    if watch and CorpusRegistry(served, roots).default is None:
        raise ServerConfigError("--watch imports into the first corpus given with --corpus; give one")
    dirs = [str(Path(d).resolve()) for d in allow_dirs]
    if data_home is not None:
        dirs.append(str((data_home / "corpora").resolve()))
    return ServerConfig(corpora=tuple(served), roots=tuple(roots), allow_dirs=tuple(dirs),
                        auth=str(Path(auth).resolve()) if auth else None, insecure_no_auth=insecure_no_auth,
                        bind=bind, hosts=tuple(allowed_hosts(bind, extra_hosts)),
                        watch=tuple(str(Path(w).resolve()) for w in watch), checkpoint=checkpoint,
                        secrets=str(Path(secrets).resolve()) if secrets else None)
