"""The team-server benchmarks: the concurrency report on hand-made figures (the browser run itself is a
benchmark), and the watched-folder latencies measured for real on a small corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from horizonlens.bench.run import write_server_report
from horizonlens.bench.timing import quantiles as _quantiles
from horizonlens.bench.watch import KINDS, bench_watch
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
               "machine": {"cpus": 2, "cpu": "test", "memory_gb": 24},
               "levels": [level(1, 1.0, []), level(4, 2.5, ["next 2: TimeoutError: late"])]}
    (tmp_path / "concurrency.json").write_text(json.dumps(results))
    text = write_server_report(tmp_path).read_text()
    assert "100,000 trajectories" in text and "--sessions 1,4" in text and "1: 1.0–2.0; 4: 1.0–2.0" in text
    assert "quiet (1-minute load average at most 2.0 on 2 CPUs)" in text and "Live runs" not in text
    assert "| 1 | 1.0 / 2.0 | 1.0 / 2.0 | 1.0 / 2.0 | 1.0 | 301 (idle 290, peak 320) | 11.0 | 0 |" in text
    assert "| 4 | 2.5 / 5.0 |" in text and "- 4 sessions: next 2: TimeoutError: late" in text


def test_bench_refuses_a_bad_number_of_sessions(tmp_path: Path) -> None:
    for bad in ("0,4", "four"):
        result = CliRunner().invoke(app, ["bench", "--scale", "none", "--sessions", bad, "--out", str(tmp_path)])
        assert result.exit_code != 0
    assert not (tmp_path / "CONCURRENCY.md").exists()


def test_a_loaded_machine_is_named_in_the_report(tmp_path: Path) -> None:
    q = {"p50": 1.0, "p95": 1.0, "n": 1}
    level = {"sessions": 1, "rss_mb": 1.0, "idle_rss_mb": 1.0, "peak_rss_mb": 1.0, "rss_per_session_mb": 0.0,
             "load_average": [18.5, 45.7], "explore": q, "trajectory": q, "next": q, "failures": []}
    (tmp_path / "concurrency.json").write_text(json.dumps({"trajectories": 10, "walk": "w", "levels": [level],
                                                           "machine": {"cpus": 2}}))
    text = write_server_report(tmp_path).read_text()
    assert "loaded (1-minute load average up to 45.7 on 2 CPUs)" in text


def test_watch_latencies_are_measured_for_every_kind_of_write(tiny_corpus: Path, tmp_path: Path) -> None:
    before = pq.read_table(tiny_corpus / "trajectories").num_rows
    result = bench_watch(tiny_corpus, tmp_path, events=len(KINDS), log=lambda _: None)
    assert result["trajectories"] == before
    assert [e["kind"] for e in result["events"]] == list(KINDS)
    assert all(e["latency_s"] > 0 for e in result["events"]) and result["latency"]["n"] == len(KINDS)
    # every poll that imported a run was logged by the watcher: the warm-up's and one per event
    assert result["poll_s"]["n"] == len(KINDS)
    assert result["within_target"] <= len(KINDS) and result["max_s"] >= result["latency"]["p95"]
    assert not list(tmp_path.glob("watch-*/")), "the corpus copy and the folder are removed"
    (tmp_path / "watch.json").write_text(json.dumps({"machine": {"cpus": 2}, "corpora": [result]}))
    text = write_server_report(tmp_path).read_text()
    latency = result["latency"]
    assert "## Live runs" in text and f"| {before:,} | {latency['p50']} / {latency['p95']} |" in text
    assert "Many users" not in text
