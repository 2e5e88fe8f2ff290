"""The core refuses writes the acting principal may not do, whatever the page offered (storage/access.py)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from horizonlens.derived.build import build_all
from horizonlens.errors import AccessDenied
from horizonlens.ingest import import_paths
from horizonlens.labels import annotations
from horizonlens.labels.annotations import Label
from horizonlens.query.console import run_sql
from horizonlens.query.store import open_store
from horizonlens.replays.layout import replay_dataset
from horizonlens.storage import access
from horizonlens.storage.access import NOBODY, OWNER, Permission, Principal, acting_as
from tests.support.corpora import TINY_RUN

VIEWER = Principal.of_role("val", "viewer")
EDITOR = Principal.of_role("eve", "editor")


@pytest.fixture()
def corpus(tmp_path: Path, tiny_corpus: Path) -> Path:
    return Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))


@pytest.fixture()
def log_file(tmp_path: Path) -> Path:
    """One chat conversation in OpenAI's message format: one run to import."""
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"id": "chat-1", "messages": [{"role": "user", "content": "hi"},
                                                             {"role": "assistant", "content": "hello"}]}) + "\n")
    return path


def _labels(corpus: Path) -> int:
    return open_store(corpus).scalar("SELECT count(*) FROM annotation_history")


def _trajectories(corpus: Path) -> int:
    return open_store(corpus).scalar("SELECT count(*) FROM trajectories")


def test_roles() -> None:
    assert VIEWER.permissions == {Permission.READ, Permission.SQL, Permission.KEEP}
    assert EDITOR.permissions == set(Permission) and not EDITOR.anywhere
    assert OWNER.anywhere and not NOBODY.permissions
    with pytest.raises(ValueError):
        Principal.of_role("x", "admin")


def test_a_viewer_can_read_and_query_but_not_write(corpus: Path, log_file: Path) -> None:
    before = _trajectories(corpus)
    label = Label(trajectory_id=TINY_RUN, label="wrong answer")
    with acting_as(VIEWER):
        assert run_sql(open_store(corpus), "SELECT count(*) AS n FROM trajectories").table["n"][0].as_py() == before
        with pytest.raises(AccessDenied, match=r"may not change labels: signed in as val \(viewer\)"):
            annotations.add_labels(corpus, [label])
        with pytest.raises(AccessDenied, match="may not import"):
            import_paths([log_file], corpus)
        with pytest.raises(AccessDenied, match="may not import"):
            build_all(corpus)
        with pytest.raises(AccessDenied, match="may not replay"):
            with replay_dataset(corpus, "ckpt").transaction(create={"kind": "replay cache"}):
                pass
        with pytest.raises(AccessDenied, match="may not export"):
            annotations.export_bytes(pa.table({"x": [1]}), "csv")
    assert _trajectories(corpus) == before and _labels(corpus) == 0
    assert not (corpus / "annotations").exists() and not (corpus / "replays" / "ckpt").exists()


def test_an_editor_writes_through_the_same_functions(corpus: Path, log_file: Path) -> None:
    before = _trajectories(corpus)
    with acting_as(EDITOR):
        ids, _ = annotations.add_labels(corpus, [Label(trajectory_id=TINY_RUN, label="wrong answer")])
        annotations.edit_label(corpus, ids[0], Label(trajectory_id=TINY_RUN, label="right answer"))
        report = import_paths([log_file], corpus)
        assert annotations.export_bytes(pa.table({"x": [1]}), "csv")
    assert report.added == 1 and _trajectories(corpus) == before + 1 and _labels(corpus) == 2
    with acting_as(EDITOR):  # a signed-in user writes as themselves, whatever author is passed
        annotations.add_labels(corpus, [Label(trajectory_id=TINY_RUN, label="x")], author="mallory")
    with acting_as(OWNER):
        annotations.add_labels(corpus, [Label(trajectory_id=TINY_RUN, label="y")], author="a colleague")
    authors = open_store(corpus).query("SELECT label, author FROM annotation_history ORDER BY created_at, label")
    assert set(zip(*authors.to_pydict().values(), strict=True)) >= {("x", "eve"), ("y", "a colleague"),
                                                                    ("wrong answer", "eve")}


def test_nobody_may_do_anything_and_a_signed_out_thread_is_nobody(corpus: Path) -> None:
    """A server with sign-in makes the process default nobody: work of no session is refused."""
    access.set_default(NOBODY)
    try:
        errors: list[Exception] = []

        def write() -> None:
            try:
                annotations.add_labels(corpus, [Label(trajectory_id="t", label="x")])
            except AccessDenied as exc:
                errors.append(exc)

        thread = threading.Thread(target=write)
        thread.start()
        thread.join()
        assert len(errors) == 1 and "not signed in" in str(errors[0])
        with pytest.raises(AccessDenied, match="may not run SQL"):
            run_sql(open_store(corpus), "SELECT 1")
        with acting_as(EDITOR):  # an explicit principal wins over the default
            annotations.add_labels(corpus, [Label(trajectory_id=TINY_RUN, label="x")])
    finally:
        access.set_default(OWNER)
    assert _labels(corpus) == 1


def test_the_app_resolver_answers_for_its_session_only() -> None:
    sessions = {"s1": VIEWER}
    here = threading.local()
    access.install_resolver(lambda: sessions.get(getattr(here, "session", None)))
    try:
        assert access.current() is OWNER  # no session on this thread: the process default
        here.session = "s1"
        assert access.current() is VIEWER and not access.can(Permission.LABEL)
        with acting_as(EDITOR):
            assert access.current() is EDITOR
        assert access.current() is VIEWER
    finally:
        access.install_resolver(None)
    assert access.current() is OWNER
