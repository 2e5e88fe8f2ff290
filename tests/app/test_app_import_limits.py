"""One upload limit (the Import page's, the upload box's and the server's), and an import report that says where."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from horizonlens.cli import app as cli
from horizonlens.ingest.targets import MAX_UPLOAD_BYTES, MAX_UPLOAD_MB
from tests.support.app import make_app
from tests.support.corpora import REPO, TAU


def test_one_upload_limit_everywhere(monkeypatch, tiny_corpus: Path) -> None:
    config = tomllib.loads((REPO / "app" / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == MAX_UPLOAD_MB and MAX_UPLOAD_BYTES == MAX_UPLOAD_MB << 20
    # `serve` passes the same limit to the server it becomes
    seen: list[list[str]] = []
    monkeypatch.setattr("os.execve", lambda exe, argv, env: seen.append(list(argv)))
    result = CliRunner().invoke(cli, ["serve", "--corpus", str(tiny_corpus), "--port", "1"])
    assert result.exit_code == 0, result.output
    argv = seen[0]
    assert argv[0] == sys.executable and argv[argv.index("--server.maxUploadSize") + 1] == str(MAX_UPLOAD_MB)
    for doc in ("docs/importing.md", "docs/security.md"):
        assert f"{MAX_UPLOAD_MB} MB per import" in (REPO / doc).read_text()


def test_import_page_limit_and_where_it_wrote(monkeypatch, tmp_path: Path) -> None:
    at = make_app(monkeypatch, tmp_path / "new", page="import_data")
    at.run()
    uploader = at.get("file_uploader")[0]
    assert uploader.proto.max_upload_size_mb == MAX_UPLOAD_MB  # the box says the page's limit, not 200 MB
    assert any(f"{MAX_UPLOAD_MB} MB per import" in m.value for m in at.markdown)
    uploader.upload("tau.json", json.dumps([TAU]).encode(), "application/json").run()
    at.text_input(key="import_target").set_value(str(tmp_path / "new")).run()
    at.button(key="import_go").click().run()
    assert not at.exception, at.exception
    done = [s.value for s in at.success]
    assert done and "1 trajectories added" in done[0]
    assert f"written to {(tmp_path / 'new').resolve()}".replace("/", "") in done[0].replace("\\", "").replace("/", "")


def test_cli_import_report_names_the_corpus(tmp_path: Path) -> None:
    src = tmp_path / "tau.json"
    src.write_text(json.dumps([TAU]))
    result = CliRunner().invoke(cli, ["import", str(src), "--into", str(tmp_path / "c")])
    assert result.exit_code == 0 and f"written to {(tmp_path / 'c').resolve()}" in result.output
