"""The `horizonlens` CLI: sample and sql, with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from analysis.cli import app

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
