"""Which processes a test session started and left running, read from /proc (no psutil needed).

The session marks its own environment (`SESSION_MARK`), which every process it starts inherits: Streamlit
servers, Chromium, Ray workers, S3 test servers, plain subprocesses. A process that outlived its parent
and was adopted by init is still found by the mark; one started with a clean environment is found while
it still descends from the session.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

SESSION_MARK = "HL_PYTEST_SESSION"
PROC = Path("/proc")


@dataclass(frozen=True)
class Proc:
    """One live process: its id, parent, state letter (R, S, D, Z, ...) and command line."""

    pid: int
    ppid: int
    state: str
    cmdline: str


def _read(pid: int) -> Proc | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        cmd = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:  # gone, or not ours to read
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": the comm may hold spaces and parens
    return Proc(pid=pid, ppid=int(fields[1]), state=fields[0], cmdline=cmd or stat[stat.find("(") + 1:stat.rfind(")")])


def _marked(pid: int, mark: str) -> bool:
    try:
        env = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return f"{SESSION_MARK}={mark}".encode() in env.split(b"\0")


def session_processes(root: int | None = None, mark: str | None = None) -> list[Proc]:
    """Live processes (zombies excluded) descending from `root` or carrying the session's mark, `root` excluded."""
    root = os.getpid() if root is None else root
    mark = os.environ.get(SESSION_MARK) if mark is None else mark
    procs = {p.pid: p for p in (_read(int(d.name)) for d in PROC.iterdir() if d.name.isdigit()) if p is not None}
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    if mark:
        found |= {pid for pid in procs if pid != root and _marked(pid, mark)}
    return sorted((procs[pid] for pid in found if pid in procs and procs[pid].state not in "ZX"),
                  key=lambda p: p.pid)


def wait_until_gone(root: int | None = None, mark: str | None = None, timeout_s: float = 15.0) -> list[Proc]:
    """The session's processes still alive after waiting up to `timeout_s` for exiting ones to finish."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive = session_processes(root, mark)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)  # polling for processes in the middle of exiting


def kill(procs: list[Proc]) -> None:
    """SIGKILL processes this session started (by id, one at a time)."""
    for p in procs:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
