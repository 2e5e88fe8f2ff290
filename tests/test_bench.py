"""The benchmark suite runs end to end on a tiny corpus and reports every figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from horizonlens.bench.queries import (
    explore_pandas,
    explore_store,
    fts_python,
    fts_store,
    open_pandas,
    open_store_steps,
)
from horizonlens.bench.scale import build_scaled_corpus
from horizonlens.corpus.store import open_store
from tests.conftest import REPO

pytestmark = pytest.mark.slow
BASE = REPO / "sample_data" / "corpus"


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (BASE / "manifest.json").exists():
        pytest.skip("sample corpus not present")
    return build_scaled_corpus(BASE, tmp_path_factory.mktemp("bench") / "c", 3000)


def test_scaled_corpus_is_a_valid_hive_partitioned_corpus(scaled: Path) -> None:
    store = open_store(scaled)
    assert store.summary()["trajectories"] == 3000
    assert {p.name.split("=")[1] for p in (scaled / "steps").iterdir()} == set(store.distinct("domain"))
    ids = store.query("SELECT count(DISTINCT trajectory_id) FROM trajectories").column(0)[0].as_py()
    assert ids == 3000
    again = build_scaled_corpus(BASE, scaled, 3000)  # reused, not rebuilt
    assert again == scaled


def test_baselines_agree_with_the_store(scaled: Path) -> None:
    store = open_store(scaled)
    assert explore_store(store) == explore_pandas(scaled)
    assert fts_store(store) == fts_python(scaled)
    tid = store.list_trajectories(limit=1).rows["trajectory_id"][0].as_py()
    assert open_store_steps(store, tid) == open_pandas(scaled, tid)


def test_bench_cli_tiny(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from horizonlens.cli import app

    result = CliRunner().invoke(app, ["bench", "--scale", "tiny", "--out", str(tmp_path), "--repeats", "1", "--no-app"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "results-tiny.json").read_text())
    corpus = data["corpora"]["2000"]
    assert corpus["explore"]["duckdb"]["median_s"] > 0 and corpus["query_memory"]["peak_rss_mb"] > 0
    assert 0.5 < data["replay"]["capture_overhead_ratio"] < 3
    text = (tmp_path / "RESULTS.md").read_text()
    assert "Explore: DuckDB" in text and "bytes per (token, layer)" in text
