"""Who may change what: the principal a write runs as, and the one check every write goes through.

A *principal* is who is acting: the person who ran the CLI (the owner, allowed everything), a signed-in
user of a team server (a viewer or an editor), or nobody (a session that has not signed in). Every write
to a corpus goes through a dataset transaction (`storage.dataset.Dataset.transaction`), and each dataset
states the permission writing to it needs (the corpus tables: `import`, labels: `label`, a replay cache:
`replay`, a kept analysis result: `keep`); the transaction calls `require()` before it takes the lock.
Writes that are not dataset transactions (exports leaving the server) call `require()` themselves. So a
page that forgets to hide a button still cannot write: the core refuses.

The principal is found, in this order:

1. the one set for this thread of work with `acting_as()` (the CLI, the server's folder watcher, tests);
2. the one a resolver installed by the app returns for the current Streamlit session (`install_resolver`);
3. the process default (`set_default`): the owner in the CLI and a local server, nobody in a server that
   requires sign-in, so work that belongs to no session is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import Enum

from horizonlens.errors import AccessDenied


class Permission(str, Enum):
    """One kind of action a principal may be allowed."""

    READ = "read"  # open a corpus and browse its pages
    SQL = "sql"  # run read-only SQL over a corpus
    KEEP = "keep"  # keep a computed result inside the corpus (a cache: no one's data changes)
    IMPORT = "import"  # write trajectories into a corpus (imports, watched folders) and its derived data
    LABEL = "label"  # add, edit and delete labels (saving a run set or a failure mode as labels included)
    REPLAY = "replay"  # run a checkpoint over trajectories and write its replay cache
    EXPORT = "export"  # take runs out of the server (exports, bundles)
    OPEN_PATH = "open_path"  # point the app at a corpus folder that the server does not serve

    def describe(self) -> str:
        """The action in words, for a refusal."""
        return _WORDS[self]


_WORDS = {Permission.READ: "read this corpus", Permission.SQL: "run SQL", Permission.KEEP: "keep computed results",
          Permission.IMPORT: "import into a corpus",
          Permission.LABEL: "change labels", Permission.REPLAY: "replay trajectories",
          Permission.EXPORT: "export runs", Permission.OPEN_PATH: "open a corpus folder that is not served"}

ROLES: dict[str, frozenset[Permission]] = {
    "viewer": frozenset({Permission.READ, Permission.SQL, Permission.KEEP}),
    "editor": frozenset(Permission),
}


@dataclass(frozen=True)
class Principal:
    """Who is acting: a name, a role and what the role allows.

    `anywhere`: may open any folder the server's user can read (only the owner: the person running
    Horizon Lens on their own files). Everyone else opens only corpora the server serves, or, with
    `open_path`, corpora inside the folders the server allows.
    """

    name: str
    role: str
    permissions: frozenset[Permission] = field(default_factory=frozenset)
    anywhere: bool = False

    def can(self, permission: Permission) -> bool:
        """Whether this principal may do `permission`."""
        return permission in self.permissions

    @classmethod
    def of_role(cls, name: str, role: str) -> Principal:
        """A user with one of the `ROLES`."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
        return cls(name, role, ROLES[role])


OWNER = Principal("owner", "owner", frozenset(Permission), anywhere=True)
NOBODY = Principal("nobody", "signed out")

_acting: ContextVar[Principal | None] = ContextVar("horizonlens_principal", default=None)
_resolver: Callable[[], Principal | None] | None = None
_default = OWNER
_lock = threading.Lock()


def current() -> Principal:
    """The principal the current work runs as (see the module docstring for the order)."""
    acting = _acting.get()
    if acting is not None:
        return acting
    resolver = _resolver
    if resolver is not None:
        found = resolver()
        if found is not None:
            return found
    return _default


def require(permission: Permission) -> Principal:
    """The current principal if it may do `permission`; AccessDenied (nothing done) otherwise."""
    who = current()
    if not who.can(permission):
        role = "not signed in" if who is NOBODY else f"signed in as {who.name} ({who.role})"
        raise AccessDenied(f"you may not {permission.describe()}: {role}. Ask an editor of this server.")
    return who


def can(permission: Permission) -> bool:
    """Whether the current principal may do `permission` (what a page asks before offering an action)."""
    return current().can(permission)


@contextmanager
def acting_as(principal: Principal) -> Iterator[Principal]:
    """Run the block as `principal` (this thread or task only); the previous principal is restored after."""
    token = _acting.set(principal)
    try:
        yield principal
    finally:
        _acting.reset(token)


def set_default(principal: Principal) -> None:
    """The principal of work that is no one's in particular: OWNER (CLI, local server) or NOBODY (sign-in)."""
    global _default
    with _lock:
        _default = principal


def install_resolver(resolver: Callable[[], Principal | None] | None) -> None:
    """How the app finds the principal of the session a thread serves (None: uninstall)."""
    global _resolver
    with _lock:
        _resolver = resolver
