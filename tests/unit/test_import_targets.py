"""Where the app's Import page may write, how much it may upload, and what it reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from horizonlens.ingest import ImportFailed, import_paths
from horizonlens.ingest.targets import MAX_UPLOAD_BYTES, MAX_UPLOAD_FILES, check_uploads, upload_target
from tests.support.hostile.cases import tau


@pytest.fixture()
def places(tmp_path: Path) -> tuple[Path, Path]:
    import json

    src = tmp_path / "a.json"
    src.write_text(json.dumps([tau(1)]))
    current = tmp_path / "corpora" / "main"
    import_paths([src], current)
    return current, tmp_path / "home"


def test_allowed_targets(places: tuple[Path, Path]) -> None:
    current, home = places
    assert upload_target(str(current), current, home) == current.resolve()
    assert upload_target("new", current, home) == current.parent.resolve() / "new"  # a name: beside the current
    assert upload_target(str(current.parent / "new2"), current, home) == current.parent.resolve() / "new2"
    deep = home / "corpora" / "team" / "run1"
    assert upload_target(str(deep), current, home) == deep.resolve()


@pytest.mark.parametrize("typed", ["/etc/cron.d/x", "../../elsewhere", "/tmp", "new/../../../x", "a/b"])
def test_refused_targets(places: tuple[Path, Path], typed: str) -> None:
    current, home = places
    with pytest.raises(ImportFailed, match="imports only into"):
        upload_target(typed, current, home)


def test_existing_folders_and_links_are_refused(places: tuple[Path, Path], tmp_path: Path) -> None:
    current, home = places
    (current.parent / "full").mkdir()
    (current.parent / "full" / "notes.txt").write_text("mine")
    with pytest.raises(ImportFailed, match="already exists"):
        upload_target("full", current, home)
    other = current.parent / "other"
    import shutil

    shutil.copytree(current, other)
    with pytest.raises(ImportFailed, match="already exists"):  # another corpus: open it first
        upload_target("other", current, home)
    (current.parent / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(ImportFailed, match="imports only into"):  # a link beside the corpus that leads away
        upload_target("link", current, home)
    with pytest.raises(ImportFailed, match="no target"):
        upload_target("  ", current, home)


def test_upload_caps() -> None:
    check_uploads([1] * MAX_UPLOAD_FILES)
    check_uploads([MAX_UPLOAD_BYTES])
    with pytest.raises(ImportFailed, match=f"at most {MAX_UPLOAD_FILES}"):
        check_uploads([1] * (MAX_UPLOAD_FILES + 1))
    with pytest.raises(ImportFailed, match="MB at a time"):
        check_uploads([MAX_UPLOAD_BYTES // 2, MAX_UPLOAD_BYTES // 2 + 1])


def test_import_uploads_names_files_as_uploaded(places: tuple[Path, Path]) -> None:
    """Uploads are staged and imported; messages name the uploaded file, never the staging folder."""
    import json

    from horizonlens.ingest.uploads import MESSAGES_SHOWN, Upload, import_uploads

    current, home = places
    good = Upload("runs/../tau.json", json.dumps([tau(2), tau(3)]).encode())
    bad = Upload("broken.jsonl", b"%%% not json\n" * (MESSAGES_SHOWN + 5))
    report = import_uploads([good, bad], str(current), current, home)
    assert not report.new_corpus and report.into == current.resolve()
    assert report.summary.startswith("2 trajectories added")
    assert report.problems[0].startswith("001-broken.jsonl") and "horizonlens-upload-" not in report.problems[0]
    assert len(report.problems) == MESSAGES_SHOWN + 1
    assert report.problems[-1] == "… and 5 more problems"

    fresh = import_uploads([Upload("again.json", json.dumps([tau(4)]).encode())], "fresh", current, home)
    assert fresh.new_corpus and fresh.into == current.parent.resolve() / "fresh"


def test_import_uploads_errors_name_the_upload(places: tuple[Path, Path]) -> None:
    from horizonlens.ingest.uploads import Upload, import_uploads

    current, home = places
    with pytest.raises(ImportFailed, match="strict mode") as err:
        import_uploads([Upload("x.jsonl", b"nope\n")], str(current), current, home, strict=True)
    assert "000-x.jsonl" in str(err.value) and "horizonlens-upload-" not in str(err.value)
    with pytest.raises(ImportFailed, match="imports only into"):
        import_uploads([Upload("x.json", b"[]")], "/etc/elsewhere", current, home)
    with pytest.raises(ImportFailed, match=f"at most {MAX_UPLOAD_FILES}"):
        import_uploads([Upload("x.json", b"[]")] * (MAX_UPLOAD_FILES + 1), str(current), current, home)
