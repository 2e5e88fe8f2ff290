"""Spill folders of the store's DuckDB connection: private, removed on close, and swept when their process died."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from horizonlens.query.connection import SPILL_PREFIX, connect


class _Owner:
    pass


def test_a_dead_process_spill_folder_is_swept_and_a_live_one_kept() -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead = Path(tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{int(done.stdout)}-"))  # that process has exited
    (dead / "spill.tmp").write_bytes(b"x")
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        alive = Path(tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{live.pid}-"))
        owner = _Owner()
        con, spill, remove = connect(owner, "256MB", 1)
        assert not dead.exists() and alive.exists()
        assert spill.exists() and spill.stat().st_mode & 0o077 == 0  # private to this user
        con.close()
        remove()
        assert not spill.exists()
    finally:
        live.communicate(b"")
        alive.rmdir()
