"""The benchmark suite runs end to end on a tiny corpus and reports every figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from horizonlens.bench.queries import (
    explore_duckdb,
    explore_pandas,
    explore_polars,
    explore_store,
    fts_store,
    open_duckdb,
    open_pandas,
    open_polars,
    open_store_steps,
    peer_connection,
    search_duckdb,
    search_pandas,
    search_polars,
)
from horizonlens.bench.scale import build_scaled_corpus
from horizonlens.query.store import open_store
from tests.support.corpora import REPO

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


@pytest.mark.parametrize("indexed", [False, True])
def test_peers_agree_with_the_store(scaled: Path, tmp_path: Path, indexed: bool) -> None:
    import shutil

    from horizonlens.derived.build import build_all

    root = scaled
    if indexed:  # the store answers through the search index and the aggregates
        root = Path(shutil.copytree(scaled, tmp_path / "c"))
        build_all(root)
    store = open_store(root)
    assert store.has_word_index == indexed
    con = peer_connection()
    explore = explore_store(store)
    assert explore > 0 and explore == explore_pandas(root) == explore_polars(root) == explore_duckdb(con, root)
    for needle in ("insufficient balance", "Error:", "é"):
        found = fts_store(store, needle=needle)
        assert found == search_pandas(root, needle) == search_polars(root, needle) == search_duckdb(con, root, needle)
    assert fts_store(store) > 0
    tid = store.list_trajectories(limit=1).rows["trajectory_id"][0].as_py()
    steps = open_store_steps(store, tid)
    assert steps > 0 and steps == open_pandas(root, tid) == open_polars(root, tid) == open_duckdb(con, root, tid)


def test_modes_bench_selects_whole_replicas(scaled: Path) -> None:
    from horizonlens.bench.modes import replica_predicate

    store = open_store(scaled)
    per_replica = store.scalar("SELECT count(*) FROM steps WHERE NOT check_passed AND trajectory_id LIKE '%~r0000'")
    where, selected = replica_predicate(scaled, n=per_replica)  # the first replica holds exactly that many
    assert selected == per_replica and where == "split_part(s.trajectory_id, '~', 2) <= 'r0000'"
    assert replica_predicate(scaled, n=10**9)[0] is None  # more than the corpus has: every failed step


def test_bench_cli_tiny(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from horizonlens.cli import app

    result = CliRunner().invoke(app, ["bench", "--scale", "tiny", "--out", str(tmp_path), "--repeats", "1", "--no-app"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "results-tiny.json").read_text())
    corpus = data["corpora"]["2000"]
    assert corpus["explore"]["horizonlens"]["median_s"] > 0 and corpus["query_memory"]["peak_rss_mb"] > 0
    assert corpus["aggregates"]["rows"]["agg_trajectories"] == 2000
    for query in ("explore", "search_exact", "open_trajectory"):
        (row,) = data["peers"][query]
        assert row["trajectories"] == 2000 and row["horizonlens_ms"] > 0 and row["polars_ms"] > 0
        assert row["duckdb_raw_ms"] > 0 and row["pandas_ms"] > 0
    assert 0.5 < data["replay"]["capture_overhead_ratio"] < 3
    modes = data["modes"]  # a 2,000-run corpus has fewer than 10^5 failed steps: all of them
    failed = open_store(tmp_path / "data" / "corpus-2000").scalar("SELECT count(*) FROM steps WHERE NOT check_passed")
    assert modes["where"] is None and modes["failed_steps"] == failed
    rows = {r["variant"]: r for r in modes["rows"]}
    assert set(rows) == {"modes", "tfidf", "modes_distinct", "tfidf_distinct"}
    assert all(r["failed_steps"] == failed and r["peak_rss_mb"] > 0 for r in rows.values())
    assert rows["modes_distinct"]["distinct_texts"] == failed > rows["modes"]["distinct_texts"]
    assert rows["tfidf"]["ratio_to_tfidf"] == 1 and rows["modes"]["ratio_to_tfidf"] > 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert "Horizon Lens beside its peers" in text and "bytes per (token, layer)" in text
    assert f"## Failure modes on {failed:,} failed steps" in text
