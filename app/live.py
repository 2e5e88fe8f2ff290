"""What lives as long as the server process: its configuration, the Host check and the folder watchers.

Sessions come and go; these are made once per process and shared by every session (never per session).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

from starlette.responses import PlainTextResponse

from horizonlens.ingest.watch import FolderWatcher
from horizonlens.server.config import ENV, ServerConfig, from_env
from horizonlens.server.hosts import host_allowed
from horizonlens.storage import access
from horizonlens.storage.access import Permission, Principal, acting_as

WATCH_INTERVAL_S = 1.0
# The watchers write into the corpus on the server's behalf: they may import, nothing else.
WATCHER = Principal("watcher", "server", frozenset({Permission.IMPORT}))

WATCHERS: list[FolderWatcher] = []


def config() -> ServerConfig:
    """This process's server configuration (from `serve`, or a local owner's default)."""
    # keyed on the environment: page tests start apps with different corpora in one process
    return _config(os.environ.get(ENV), os.environ.get("HORIZONLENS_CORPUS"), os.environ.get("HORIZONLENS_CHECKPOINT"))


@lru_cache(maxsize=8)
def _config(_server: str | None, corpus: str | None, _checkpoint: str | None) -> ServerConfig:
    return from_env(corpus)


class HostGuard:
    """ASGI middleware: answer only requests whose `Host` header names this server (see server/hosts.py)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Refuse a request for a host name not served; pass every other one on."""
        hosts = config().hosts
        if scope["type"] in ("http", "websocket") and hosts:
            header = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), None)
            if not host_allowed(header, hosts):
                # a websocket handshake is refused with this HTTP answer too (the denial-response extension)
                await PlainTextResponse("This server does not answer that host name.", status_code=400)(
                    scope, receive, send)
                return
        await self.app(scope, receive, send)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _watch(watcher: FolderWatcher, stop: threading.Event) -> None:
    with acting_as(WATCHER):
        watcher.run(stop, WATCH_INTERVAL_S)


@asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[None]:
    """Start the watchers of `serve --watch` with the server; stop them (and wait for them) when it stops."""
    cfg = config()
    # work that belongs to no session (threads of the server itself) acts as nobody once sign-in is required
    access.set_default(cfg.open_principal)
    stop = threading.Event()
    threads = []
    default = cfg.registry().default
    if cfg.watch and default is not None:
        into = default.location
        for folder in cfg.watch:
            watcher = FolderWatcher(folder, into, log=_log)
            WATCHERS.append(watcher)
            thread = threading.Thread(target=_watch, args=(watcher, stop), name=f"horizonlens-watch-{folder}",
                                      daemon=True)
            thread.start()
            threads.append(thread)
            _log(f"watching {folder} into {into}")
    try:
        yield None
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)  # an import in progress finishes its commit (or leaves nothing visible)


def secrets() -> dict[str, Any] | None:
    """The secrets file `serve` checked for st.login (its [auth] section), handed to Streamlit as it is."""
    cfg = config()
    if not cfg.secrets:
        return None
    from horizonlens.server.oidc import read_secrets

    return read_secrets(cfg.secrets)
