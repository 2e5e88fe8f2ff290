"""The users file of a team server: who may sign in, with which role, and how a password is checked.

A TOML file, written by `horizonlens users add|remove` and read by `horizonlens serve --auth FILE`:

    # Horizon Lens users: horizonlens users add FILE NAME --role viewer|editor
    [users.alice]
    role = "editor"
    password = "scrypt$32768$8$1$<salt, base64>$<hash, base64>"

    [oidc]                      # optional: sign-in through Streamlit's st.login (docs/security.md)
    provider = "google"         # the [auth.google] section of the secrets file; omit for [auth]
    editors = ["alice@example.com"]
    viewers = ["*@example.com"] # an address, or *@domain for everyone of a domain

Passwords are stored as salted scrypt hashes (hashlib.scrypt; the parameters are kept with each hash so
they can be raised later). The file must be a regular file readable by its owner only: a users file
that others can read (group or world bits set), that cannot be read, or that does not parse is refused
with a message saying what to fix, and the server does not start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from horizonlens.errors import CorpusError, ServerConfigError
from horizonlens.storage.access import ROLES
from horizonlens.storage.atomic import write_bytes_atomic

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # scrypt reads the whole password; a pasted megabyte is refused before hashing
# scrypt cost: n=2^15, r=8 takes 32 MiB and about a tenth of a second per check, so guessing is slow
# while a sign-in stays quick (OWASP's minimum for scrypt is n=2^17 with r=8 at p=1, or n=2^15 with p=3).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 3
SCRYPT_MAXMEM = 64 << 20
_HASH = re.compile(r"^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")
_EMAIL_PATTERN = re.compile(r"^(\*|[^@\s*]+)@[^@\s*]+\.[^@\s*]+$")
HEADER = "# Horizon Lens users: horizonlens users add FILE NAME --role viewer|editor (docs/security.md)\n"


@dataclass(frozen=True)
class User:
    """One account of the users file."""

    name: str
    role: str
    password_hash: str


@dataclass(frozen=True)
class OidcRoles:
    """Sign-in through an identity provider (Streamlit's st.login): which provider, and who gets which role."""

    provider: str | None = None  # None: the [auth] section itself
    editors: tuple[str, ...] = ()
    viewers: tuple[str, ...] = ()

    def role_of(self, email: str | None) -> str | None:
        """The role of a signed-in address (editor wins over viewer), or None: not allowed here."""
        if not email:
            return None
        email = email.strip().lower()
        for role, patterns in (("editor", self.editors), ("viewer", self.viewers)):
            for pattern in patterns:
                if pattern == email or (pattern.startswith("*@") and email.endswith(pattern[1:])):
                    return role
        return None


@dataclass(frozen=True)
class UsersFile:
    """A users file as read: its accounts, its optional OIDC section, and the state it was read in."""

    path: Path
    users: dict[str, User] = field(default_factory=dict)
    oidc: OidcRoles | None = None
    stamp: tuple[int, int, int] = (0, 0, 0)  # (inode, size, mtime_ns): re-read when it changes


# --- passwords -------------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """A salted scrypt hash of `password`, in the form the users file stores."""
    check_password_text(password)
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=SCRYPT_MAXMEM, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_password_text(password: str) -> None:
    """Refuse a password that is too short, too long or has line breaks (ServerConfigError)."""
    if len(password) < MIN_PASSWORD:
        raise ServerConfigError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ServerConfigError(f"a password has at most {MAX_PASSWORD} characters")
    if "\n" in password or "\r" in password:
        raise ServerConfigError("a password cannot contain a line break")


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    m = _HASH.match(stored)
    if not m:
        raise ValueError("not a scrypt hash written by `horizonlens users add`")
    n, r, p = int(m[1]), int(m[2]), int(m[3])
    if n < 2 or n & (n - 1) or n > 2**20 or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise ValueError("scrypt parameters out of range")
    return n, r, p, base64.b64decode(m[4]), base64.b64decode(m[5])


def verify_password(stored: str, password: str) -> bool:
    """Whether `password` matches a stored hash (compared in constant time)."""
    if len(password) > MAX_PASSWORD:
        return False
    n, r, p, salt, expected = _parse_hash(stored)
    digest = hashlib.scrypt(password.encode("utf-8", "replace"), salt=salt, n=n, r=r, p=p,
                            maxmem=max(SCRYPT_MAXMEM, 256 * r * n), dklen=len(expected))
    return hmac.compare_digest(digest, expected)


# A hash nobody's password matches: checked against when the user does not exist, so an unknown name
# costs the same time as a wrong password and the timing does not tell which names exist.
_DECOY = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(b'horizonlens-decoy')}${_b64(bytes(32))}"


def check_credentials(users: UsersFile, name: str, password: str) -> User | None:
    """The user if `name` and `password` match an account, else None (same cost either way)."""
    user = users.users.get(name.strip())
    ok = verify_password(user.password_hash if user else _DECOY, password)
    return user if ok and user is not None else None


# --- the file --------------------------------------------------------------------------------------
def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns


def check_permissions(path: Path) -> os.stat_result:
    """The file's stat if it is a regular file that only its owner can read; ServerConfigError otherwise."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ServerConfigError(f"users file {path} does not exist; create it with "
                                f"`horizonlens users add {path} NAME --role editor`") from None
    except OSError as exc:
        raise ServerConfigError(f"users file {path} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ServerConfigError(f"users file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise ServerConfigError(f"users file {path} can be read or written by other users (mode "
                                f"{stat.S_IMODE(st.st_mode):04o}); it holds password hashes: run "
                                f"`chmod 600 {path}`")
    return st


def load_users(path: Path | str, require_users: bool = True) -> UsersFile:
    """Read and check a users file (see the module docstring); ServerConfigError says what is wrong."""
    path = Path(path)
    st = check_permissions(path)
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except PermissionError:
        raise ServerConfigError(f"users file {path} cannot be read (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise ServerConfigError(f"users file {path} is not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ServerConfigError(f"users file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ServerConfigError(f"users file {path} cannot be read ({exc.strerror})") from None
    unknown = set(data) - {"users", "oidc"}
    if unknown:
        raise ServerConfigError(f"users file {path}: unknown section(s) {', '.join(sorted(unknown))}; "
                                "expected [users.NAME] and optionally [oidc]")
    users = _users(path, data.get("users", {}))
    oidc = _oidc(path, data["oidc"]) if "oidc" in data else None
    if require_users and not users and oidc is None:
        raise ServerConfigError(f"users file {path} has no users; add one with "
                                f"`horizonlens users add {path} NAME --role editor`")
    return UsersFile(path, users, oidc, _stamp(st))


def _users(path: Path, raw: Any) -> dict[str, User]:
    if not isinstance(raw, dict):
        raise ServerConfigError(f"users file {path}: [users] must be a table of users")
    out: dict[str, User] = {}
    for name, entry in raw.items():
        where = f"users file {path}: user {name!r}"
        if not NAME.match(name):
            raise ServerConfigError(f"{where}: a name is 1-64 letters, digits, '.', '_', '@' or '-'")
        if not isinstance(entry, dict) or set(entry) != {"role", "password"}:
            raise ServerConfigError(f"{where}: needs exactly `role` and `password`")
        if entry["role"] not in ROLES:
            raise ServerConfigError(f"{where}: role {entry['role']!r} is not one of {', '.join(ROLES)}")
        if not isinstance(entry["password"], str):
            raise ServerConfigError(f"{where}: `password` must be a string")
        try:
            _parse_hash(entry["password"])
        except (ValueError, TypeError) as exc:
            raise ServerConfigError(f"{where}: password is {exc}; set it again with `horizonlens users add "
                                    f"{path} {name} --role {entry['role']} --replace`") from None
        out[name] = User(name, entry["role"], entry["password"])
    return out


def _oidc(path: Path, raw: Any) -> OidcRoles:
    where = f"users file {path}: [oidc]"
    if not isinstance(raw, dict) or set(raw) - {"provider", "editors", "viewers"}:
        raise ServerConfigError(f"{where} takes only `provider`, `editors` and `viewers`")
    provider = raw.get("provider")
    if provider is not None and (not isinstance(provider, str) or not re.match(r"^[A-Za-z0-9_-]+$", provider)):
        raise ServerConfigError(f"{where}: `provider` names a section [auth.NAME] of the secrets file")
    lists = {}
    for key in ("editors", "viewers"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and _EMAIL_PATTERN.match(v) for v in value):
            raise ServerConfigError(f"{where}: `{key}` is a list of e-mail addresses or *@domain patterns")
        lists[key] = tuple(v.strip().lower() for v in value)
    if not lists["editors"] and not lists["viewers"]:
        raise ServerConfigError(f"{where}: nobody may sign in; list addresses in `editors` or `viewers`")
    return OidcRoles(provider, lists["editors"], lists["viewers"])


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render(users: dict[str, User], oidc_text: str) -> str:
    lines = [HEADER]
    for user in sorted(users.values(), key=lambda u: u.name):
        lines += [f"\n[users.{_toml_string(user.name)}]\n", f"role = {_toml_string(user.role)}\n",
                  f"password = {_toml_string(user.password_hash)}\n"]
    return "".join(lines) + oidc_text


def _oidc_text(path: Path) -> str:
    """The [oidc] section of an existing file, kept as written when users are added or removed."""
    if not path.exists():
        return ""
    text = path.read_text("utf-8")
    m = re.search(r"^\[oidc\][\s\S]*?(?=^\[(?!oidc\b)|\Z)", text, re.M)
    return ("\n" + m.group(0).rstrip() + "\n") if m else ""


def _write(path: Path, text: str) -> None:
    """Replace the file atomically, created owner-only (0600) before any byte is written."""
    try:
        write_bytes_atomic(text.encode("utf-8"), path, mode=0o600)
    except CorpusError as exc:
        raise ServerConfigError(str(exc)) from exc


def _existing(path: Path) -> UsersFile:
    return load_users(path, require_users=False) if path.exists() else UsersFile(path)


def add_user(path: Path | str, name: str, role: str, password: str, replace: bool = False) -> User:
    """Add an account (or, with `replace`, set its role and password); the file is created 0600 if missing."""
    path = Path(path)
    if not NAME.match(name):
        raise ServerConfigError(f"{name!r}: a user name is 1-64 letters, digits, '.', '_', '@' or '-'")
    if role not in ROLES:
        raise ServerConfigError(f"role {role!r} is not one of {', '.join(ROLES)}")
    current = _existing(path)
    if name in current.users and not replace:
        raise ServerConfigError(f"user {name!r} already exists in {path}; pass --replace to change their "
                                "role and password")
    user = User(name, role, hash_password(password))
    _write(path, _render({**current.users, name: user}, _oidc_text(path)))
    return user


def remove_user(path: Path | str, name: str) -> None:
    """Remove an account (ServerConfigError if there is none of that name)."""
    path = Path(path)
    current = _existing(path)
    if name not in current.users:
        raise ServerConfigError(f"no user {name!r} in {path}")
    _write(path, _render({k: v for k, v in current.users.items() if k != name}, _oidc_text(path)))


def list_users(path: Path | str) -> list[User]:
    """The accounts of a users file, by name."""
    return sorted(load_users(path, require_users=False).users.values(), key=lambda u: u.name)
