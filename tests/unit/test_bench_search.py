"""The search-index and Explore benchmarks run on the sample corpus, and both index designs give the same answers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from horizonlens.bench.explore import explore_profile, explore_runs
from horizonlens.bench.explore import report_lines as explore_lines
from horizonlens.bench.search import EXACT_NEEDLES, WORDS_QUERIES, bench_search, pair_regex
from horizonlens.bench.search import report_lines as search_lines
from horizonlens.derived.search_index import Cond, PairCond, build_index
from horizonlens.query import TrajectoryFilter, open_store
from tests.support.corpora import SAMPLE_CORPUS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = Path(shutil.copytree(SAMPLE_CORPUS, tmp_path_factory.mktemp("bench-search") / "c"))
    build_index(root)
    return root


def test_both_designs_answer_alike_and_report(indexed: Path, tmp_path: Path) -> None:
    pytest.importorskip("tantivy")
    store = open_store(indexed)
    out = bench_search(store, tmp_path, repeats=1, log=lambda m: None)  # raises if the designs disagree
    assert set(out["designs"]) == {"postings", "tantivy"}
    for d in out["designs"].values():
        assert d["bytes"] > 0 and d["ratio_to_parquet"] == round(d["bytes"] / out["parquet_bytes"], 3)
        assert set(d["exact"]["per_query_ms"]) == set(EXACT_NEEDLES)
        assert set(d["words"]["per_query_ms"]) == set(WORDS_QUERIES)
        assert 0 <= d["exact"]["p50_ms"] <= d["exact"]["p95_ms"]
    # the answers are the store's own: the Explore search gives the same totals
    for text in ("insufficient balance", "error: insufficient balance"):
        page = store.list_trajectories(TrajectoryFilter(text=text, text_mode="exact"), limit=1)
        assert out["answers"][f"exact:{text}"]["hits"] == page.total > 0
    assert out["answers"]["exact:insufficient balance"]["checked"] == 0  # one pair: no text read
    assert out["answers"]["exact:error: insufficient balance"]["checked"] > 0  # two pairs: candidates checked
    lines = search_lines({"corpora": {"2400": {"search_designs": out}}})
    assert any("| postings |" in line for line in lines) and any("| tantivy |" in line for line in lines)


def test_pair_conditions_become_tantivy_regexes() -> None:
    pair = PairCond(Cond("suffix", "insufficient"), Cond("equal", " "), Cond("prefix", "balance"))
    assert pair_regex(pair) == r"[a-z0-9_]*insufficient\x{20}balance[a-z0-9_]*"
    edge = PairCond(Cond("any"), Cond("suffix", ": "), Cond("equal", "x"))
    assert pair_regex(edge) == r"(\x{2}|[a-z0-9_]+)[^a-z0-9_]*\x{3a}\x{20}x"


def test_explore_runs_and_profiles(indexed: Path) -> None:
    store = open_store(indexed)
    runs = explore_runs(store, runs=2, repeats=1)
    assert [r["run"] for r in runs] == [1, 2]
    assert all(r["best_peer_ratio"] > 0 and set(r["median_ms"]) == {"horizonlens", "polars", "duckdb_raw"}
               for r in runs)
    plans = explore_profile(store)
    assert set(plans) == {"store_page", "store_count", "duckdb_page", "duckdb_count"}
    assert all("Total Time" in p for p in plans.values())
    assert "READ_PARQUET" in plans["duckdb_page"]  # the peer reads the files; the store reads its memory
    lines = explore_lines({"corpora": {"2400": {"explore_runs": runs}}})
    assert len([line for line in lines if line.startswith("| 2,400 |")]) == 2


def test_the_search_bench_writes_its_report(indexed: Path, tmp_path: Path) -> None:
    from horizonlens.bench.search import main

    main([str(indexed), "--data", str(tmp_path / "data"), "--out", str(tmp_path), "--repeats", "1",
          "--explore-runs", "1", "--no-tantivy"])
    text = (tmp_path / "SEARCH.md").read_text()
    assert "| 2,400 | postings |" in text and "tantivy" not in text.split("## Explore")[0].split("|---|")[-1]
    assert "## Explore beside its peers, run after run" in text
    results = json.loads((tmp_path / "search.json").read_text())
    assert set(results["corpora"]["2400"]) == {"search_designs", "explore_runs", "explore_profile"}
