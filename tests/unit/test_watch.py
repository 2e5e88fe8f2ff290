"""Following a folder of logs: new lines and files become runs, half lines wait, rewrites never duplicate."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from horizonlens.derived.aggregates import SPEC as AGGREGATES
from horizonlens.derived.spec import is_fresh
from horizonlens.ingest.watch import FolderWatcher
from horizonlens.query.store import open_store
from horizonlens.storage.dataset import Dataset
from tests.support.logs import append, line, tau_run


def _ids(corpus: Path) -> list[str]:
    return sorted(open_store(corpus).query("SELECT trajectory_id FROM trajectories").column(0).to_pylist())


def _runs(*tasks: int) -> list[str]:
    return sorted(f"tau-bench:{t}:0" for t in tasks)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "logs").mkdir()
    return tmp_path / "logs"


def test_appended_lines_are_read_once_and_half_lines_wait(folder: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    log = folder / "runs.jsonl"
    watcher = FolderWatcher(folder, corpus)
    append(log, line(tau_run(1)) + line(tau_run(2)))
    half = line(tau_run(3))
    append(log, half[:40])
    report = watcher.poll()
    assert report.added == 2 and _ids(corpus) == _runs(1, 2)
    assert report.bytes_read == log.stat().st_size
    assert watcher.poll().bytes_read == 40  # only the half line is looked at again, and still waits
    append(log, half[40:] + line(tau_run(4)))
    report = watcher.poll()
    assert report.added == 2 and report.bytes_read == len(half) + len(line(tau_run(4)))  # from the half line on
    assert _ids(corpus) == _runs(1, 2, 3, 4)
    assert watcher.poll().bytes_read == 0 and not watcher.poll().changed
    # derived data follow: the aggregates describe the corpus state with the new runs
    assert is_fresh(AGGREGATES, Dataset(corpus, ("trajectories", "steps")).snapshot())


def test_a_bad_line_is_reported_once_with_its_line_number(folder: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    log = folder / "runs.jsonl"
    watcher = FolderWatcher(folder, corpus)
    append(log, line(tau_run(1)))
    watcher.poll()
    append(log, b"{not json\n" + line(tau_run(2)))
    report = watcher.poll()
    assert report.added == 1 and [p.where for p in report.problems] == ["line 2"]
    assert not watcher.poll().problems


def test_truncated_and_rewritten_files_never_duplicate_runs(folder: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    log = folder / "runs.jsonl"
    watcher = FolderWatcher(folder, corpus)
    append(log, line(tau_run(1)) + line(tau_run(2)))
    watcher.poll()
    # rewritten in place with other bytes before the read position (same inode, same size or more)
    with log.open("r+b") as fh:
        fh.write(line(tau_run(1, reward=0.0)) + line(tau_run(2)) + line(tau_run(5)))
    report = watcher.poll()
    assert report.reread == ["runs.jsonl"] and report.replaced == 2 and report.added == 1
    assert _ids(corpus) == _runs(1, 2, 5)
    store = open_store(corpus)
    assert store.scalar("SELECT outcome FROM trajectories WHERE trajectory_id = 'tau-bench:1:0'") == "failure"
    # truncated: read again from the start once it has lines again; nothing is duplicated, nothing deleted
    log.write_bytes(b"")
    assert watcher.poll().reread == ["runs.jsonl"]
    assert watcher.poll().reread == []
    append(log, line(tau_run(2)) + line(tau_run(6)))
    report = watcher.poll()
    assert report.added == 1 and report.replaced == 1 and _ids(corpus) == _runs(1, 2, 5, 6)
    # replaced by a new file (another inode), as a writer's rename does
    tmp = folder / "runs.jsonl.tmp"
    tmp.write_bytes(line(tau_run(6)) + line(tau_run(7)))
    os.replace(tmp, log)
    report = watcher.poll()
    assert report.reread == ["runs.jsonl"] and report.added == 1 and report.replaced == 1
    assert _ids(corpus) == _runs(1, 2, 5, 6, 7)
    assert open_store(corpus).scalar("SELECT count(*) FROM trajectories") == 5


def test_whole_files_are_read_once_settled_and_again_when_changed(folder: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    watcher = FolderWatcher(folder, corpus, settle_s=0.5)
    path = folder / "batch.json"
    path.write_text(json.dumps([tau_run(1), tau_run(2)]))
    assert not watcher.poll().changed  # just written: might still be growing
    old = time.time() - 5
    os.utime(path, (old, old))
    assert watcher.poll().added == 2
    assert not watcher.poll().changed
    path.write_text(json.dumps([tau_run(1), tau_run(2), tau_run(3)]))
    os.utime(path, (old + 1, old + 1))
    report = watcher.poll()
    assert report.added == 1 and report.replaced == 2 and _ids(corpus) == _runs(1, 2, 3)


def test_a_restarted_watcher_skips_runs_already_there(folder: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    append(folder / "runs.jsonl", line(tau_run(1)) + line(tau_run(2)))
    FolderWatcher(folder, corpus).poll()
    files_before = sorted(p.name for p in (corpus / "trajectories").iterdir())
    report = FolderWatcher(folder, corpus).poll()
    assert report.added == 0 and report.replaced == 0
    assert sorted(p.name for p in (corpus / "trajectories").iterdir()) == files_before  # nothing rewritten


def test_a_writer_appending_while_the_watcher_runs(folder: Path, tmp_path: Path) -> None:
    """Lines written in pieces by another thread end up as exactly the runs written, each once."""
    corpus = tmp_path / "corpus"
    log = folder / "live.jsonl"
    stop = threading.Event()
    watcher = FolderWatcher(folder, corpus)
    thread = threading.Thread(target=watcher.run, args=(stop, 0.05))
    thread.start()
    try:
        for task in range(12):
            data = line(tau_run(task))
            append(log, data[:25])  # a writer flushing mid-line
            append(log, data[25:])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not corpus.exists() or len(_ids(corpus)) < 12):
            stop.wait(0.2)  # polling the corpus for the runs, not waiting a fixed time
    finally:
        stop.set()
        thread.join()
    assert _ids(corpus) == _runs(*range(12))
