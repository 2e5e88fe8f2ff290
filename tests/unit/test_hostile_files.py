"""Every hand-made hostile file (tests/support/hostile/cases.py) gives its stated outcome, and never a traceback."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from horizonlens.ingest import ImportFailed, import_paths, readers, zips
from tests.support.hostile.cases import CASES, Case


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_file(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in case.limits.items():
        monkeypatch.setattr(readers if hasattr(readers, name) else zips, name, value)
    src = tmp_path / "in"
    src.mkdir()
    paths = case.build(src)
    try:
        report = import_paths(paths, tmp_path / "c")
    except ImportFailed as exc:  # nothing readable at all: refused, with every problem in the message
        assert case.added == 0, exc
        problems = str(exc)
    else:
        assert report.added == case.added, report.problems
        assert len(report.notices) == case.cuts, report.notices
        problems = "\n".join(map(str, report.problems))
        if case.added:
            assert pq.read_table(tmp_path / "c" / "trajectories").num_rows == case.added
        assert len(report.problems) >= len(case.problems)
    for file, where, reason in case.problems:
        assert any(f"{file}: {where}: " in line and reason in line for line in problems.splitlines()), \
            f"expected {file}: {where}: ...{reason}... in:\n{problems}"
