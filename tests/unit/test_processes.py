"""The session's own check that it leaves no process behind can see a leaked process, orphaned or not."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support import processes
from tests.support.corpora import REPO


def test_a_running_child_is_found_and_a_finished_one_is_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert child.pid in {p.pid for p in processes.session_processes()}
    finally:
        child.kill()
        child.wait()
    assert child.pid not in {p.pid for p in processes.session_processes()}


def test_an_orphan_is_found_by_its_mark() -> None:
    """A grandchild whose parent exited is adopted by init: only the inherited mark ties it to the session."""
    parent = subprocess.run([sys.executable, "-c", (
        "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)")], capture_output=True, text=True,
        check=True, timeout=30)
    orphan = int(parent.stdout.strip())
    try:
        found = {p.pid: p for p in processes.session_processes()}
        assert orphan in found and found[orphan].ppid != os.getpid()
    finally:
        processes.kill([processes.Proc(orphan, 0, "S", "")])
    deadline = time.monotonic() + 10
    while any(p.pid == orphan for p in processes.session_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)  # init reaps it
    assert not any(p.pid == orphan for p in processes.session_processes())


def test_a_session_that_leaks_a_process_fails(tmp_path: Path) -> None:
    """A pytest session with the suite's check and one test that leaves a sleeper running: it fails, naming it."""
    (tmp_path / "conftest.py").write_text("from tests.conftest import no_process_left_behind, pytest_configure  "
                                          "# noqa: F401\n")
    (tmp_path / "test_leak.py").write_text(
        "import subprocess, sys\n\n"
        "def test_leaks():\n"
        "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)  # leaked-on-purpose'])\n")
    env = {k: v for k, v in os.environ.items() if k != processes.SESSION_MARK}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0, out.stdout
    assert "left processes running" in out.stdout and "leaked-on-purpose" in out.stdout, out.stdout[-3000:]
    assert not [p for p in processes.session_processes() if "leaked-on-purpose" in p.cmdline]  # and killed it
