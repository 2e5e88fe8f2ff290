"""The `horizonlens` CLI: sample and sql, with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from horizonlens.cli import app

runner = CliRunner()


def test_sample_then_sql(tmp_path: Path) -> None:
    out = tmp_path / "c"
    result = runner.invoke(app, ["sample", str(out), "--trajectories", "6", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert (out / "manifest.json").exists()
    result = runner.invoke(app, ["sql", str(out), "SELECT count(*) AS n FROM trajectories", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[0]) == {"n": 6}
    again = runner.invoke(app, ["sample", str(out), "--trajectories", "6"])
    assert again.exit_code == 1 and "not empty" in again.output


def test_sql_refusal_and_bad_corpus(tiny_corpus: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["sql", str(tiny_corpus), "COPY steps TO 'x.csv'"])
    assert result.exit_code == 1 and "only SELECT" in result.output
    result = runner.invoke(app, ["sql", str(tmp_path), "SELECT 1"])
    assert result.exit_code == 1 and "manifest.json" in result.output


def test_serve_refuses_missing_corpus(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "--corpus", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "not a directory" in result.output


def test_every_command_and_option_is_documented() -> None:
    """Each CLI command is in the README, and each of its options appears in README or docs/."""
    import typer.main

    repo = Path(__file__).resolve().parents[2]
    docs = (repo / "README.md").read_text() + "".join(p.read_text() for p in (repo / "docs").glob("*.md")) \
        + (repo / "bench" / "README.md").read_text()
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        assert f"horizonlens {name}" in docs, f"command {name} is not documented"
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt not in ("--help",):
                    assert opt in docs, f"option {opt} of {name} is not documented"
