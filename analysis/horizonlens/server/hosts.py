"""Which `Host` names a server answers, so a page on another domain cannot reach it through DNS rebinding.

A browser sends the name it looked up in the `Host` header. A hostile page whose domain was made to
resolve to 127.0.0.1 (DNS rebinding) is same-origin with itself, so the Origin check passes; only the
Host header gives it away. The server therefore answers only the names it is served under: for a
loopback address, `127.0.0.1`, `localhost` and `::1`; for another address, that address, the machine's
own names and addresses; plus any name given with `--allowed-host` (a reverse proxy's public name).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _machine_names() -> list[str]:
    names = [socket.gethostname(), socket.getfqdn()]
    for name in list(names):
        try:
            names += [str(info[4][0]) for info in socket.getaddrinfo(name, None)]
        except OSError:
            continue
    return names


def allowed_hosts(bind: str, extra: Iterable[str] = ()) -> list[str]:
    """The host names a server bound to `bind` answers (lower case, no port), `extra` included."""
    names = list(LOOPBACK_NAMES)
    if not is_loopback(bind):
        names += _machine_names()
        if bind not in WILDCARD_BINDS:
            names.append(bind)
    names += list(extra)
    out: list[str] = []
    for n in names:
        n = n.strip().lower().strip("[]").rstrip(".")
        if n and n not in out:
            out.append(n)
    return out


def host_name(header: str | None) -> str | None:
    """The name in a `Host` header without its port (IPv6 brackets removed), or None if it is malformed."""
    if not header:
        return None
    try:
        parts = urlsplit(f"//{header.strip()}")
        _ = parts.port  # validates the port
    except ValueError:
        return None
    if parts.hostname is None or parts.username or parts.password or parts.path or parts.query or parts.fragment:
        return None
    return parts.hostname.lower().rstrip(".")


def host_allowed(header: str | None, allowed: Iterable[str]) -> bool:
    """Whether a request's `Host` header names one of `allowed` (`*` allows any; `*.example.com` a domain)."""
    name = host_name(header)
    if name is None:
        return False
    for pattern in allowed:
        pattern = pattern.strip().lower().rstrip(".")
        if pattern == "*" or pattern == name or (pattern.startswith("*.") and name.endswith(pattern[1:])):
            return True
    return False
