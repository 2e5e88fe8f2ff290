"""The concurrency benchmark's arithmetic and report, on hand-made figures (the browser run itself is a benchmark)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from horizonlens.bench.concurrency import _quantiles, write_markdown
from horizonlens.cli import app


def test_quantiles_are_nearest_rank() -> None:
    assert _quantiles([]) == {"p50": None, "p95": None, "n": 0}
    assert _quantiles([3.0]) == {"p50": 3.0, "p95": 3.0, "n": 1}
    values = [float(v) for v in range(1, 21)]  # 1..20: median 10.5, the 95th percentile by nearest rank is 19
    assert _quantiles(values) == {"p50": 10.5, "p95": 19.0, "n": 20}
    assert _quantiles(list(reversed(values)))["p95"] == 19.0


def test_report_has_one_row_per_level_and_lists_failures(tmp_path: Path) -> None:
    def level(n: int, p50: float, failures: list[str]) -> dict:
        q = {"p50": p50, "p95": p50 * 2, "n": n, "p50_ratio_to_one_session": p50}
        return {"sessions": n, "rss_mb": 300.0 + n, "idle_rss_mb": 290.0, "peak_rss_mb": 320.0,
                "rss_per_session_mb": (10.0 + n) / n, "load_average": [1.0, 2.0], "explore": q, "trajectory": q,
                "next": q, "failures": failures}

    results = {"trajectories": 100_000, "walk": "Explore → Trajectory → Next × 3",
               "levels": [level(1, 1.0, []), level(4, 2.5, ["next 2: TimeoutError: late"])]}
    write_markdown(results, tmp_path / "CONCURRENCY.md", {"cpus": 2, "cpu": "test", "memory_gb": 24})
    text = (tmp_path / "CONCURRENCY.md").read_text()
    assert "100,000 trajectories" in text and "--sessions 1,4" in text and "1: 1.0–2.0; 4: 1.0–2.0" in text
    assert "| 1 | 1.0 / 2.0 | 1.0 / 2.0 | 1.0 / 2.0 | 1.0 | 301 (idle 290, peak 320) | 11.0 | 0 |" in text
    assert "| 4 | 2.5 / 5.0 |" in text and "- 4 sessions: next 2: TimeoutError: late" in text


def test_bench_refuses_a_bad_number_of_sessions(tmp_path: Path) -> None:
    for bad in ("0,4", "four"):
        result = CliRunner().invoke(app, ["bench", "--scale", "none", "--sessions", bad, "--out", str(tmp_path)])
        assert result.exit_code != 0
    assert not (tmp_path / "CONCURRENCY.md").exists()
