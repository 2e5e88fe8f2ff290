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
from tests.support.corpora import SAMPLE_CORPUS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_scaled_corpus(SAMPLE_CORPUS, tmp_path_factory.mktemp("bench") / "c", 3000)


def test_scaled_corpus_is_a_valid_hive_partitioned_corpus(scaled: Path) -> None:
    store = open_store(scaled)
    assert store.summary()["trajectories"] == 3000
    assert {p.name.split("=")[1] for p in (scaled / "steps").iterdir()} == set(store.distinct("domain"))
    ids = store.query("SELECT count(DISTINCT trajectory_id) FROM trajectories").column(0)[0].as_py()
    assert ids == 3000
    again = build_scaled_corpus(SAMPLE_CORPUS, scaled, 3000)  # reused, not rebuilt
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


def test_diff_floor_agrees_with_the_store(scaled: Path) -> None:
    from horizonlens.bench.diff import bench_diff, diff_store, pairs_duckdb, pairs_polars

    store = open_store(scaled)
    con = peer_connection()
    common = diff_store(store)
    # replicas carry their own task ids: every replicated task is run by both students
    assert common > 0 and common == pairs_duckdb(con, scaled) == pairs_polars(root=scaled)
    result = bench_diff(store, repeats=1)
    assert result["common_tasks"] == common and result["ratio_to_floor"] > 0


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

    result = CliRunner().invoke(app, ["bench", "--scale", "tiny", "--out", str(tmp_path), "--repeats", "1", "--no-app",
                                      "--no-export"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "results-tiny.json").read_text())
    corpus = data["corpora"]["2000"]
    assert corpus["query_memory"]["peak_rss_mb"] > 0  # a size, not a time: no baseline in the run
    assert corpus["aggregates"]["rows"]["agg_trajectories"] == 2000
    # each figure beside its baseline from the same, interleaved run; the margins are a fraction of what is
    # measured (40x and more at this size), so machine load cannot flip them
    explore, search = corpus["explore"], corpus["search_exact"]
    assert explore["horizonlens"]["median_s"] * 5 < explore["json_files"]["median_s"]  # re-reading the logs
    assert search["horizonlens"]["median_s"] * 5 < search["pandas"]["median_s"]  # pandas scanning every step
    for query in ("explore", "search_exact", "open_trajectory"):
        (row,) = data["peers"][query]
        assert row["trajectories"] == 2000
        for engine in ("horizonlens", "polars", "duckdb_raw", "pandas"):  # the table shows the measured medians
            assert row[f"{engine}_ms"] == round(corpus[query][engine]["median_s"] * 1000, 2)
    replay = data["replay"]
    assert 0.5 < replay["capture_overhead_ratio"] < 3  # recording the routers costs little beside a forward
    assert 0.5 < replay["chunked_vs_one_forward_ratio"] < 4  # chunks with the cache cost about one forward
    assert replay["prefix_reforward_vs_one_forward_ratio"] > 1.5  # what the cache saves a step-by-step viewer
    assert replay["routing_bytes_per_token_layer"] * 4 < replay["raw_fp32_logits_bytes_per_token_layer"]
    text = (tmp_path / "RESULTS.md").read_text()
    assert "Horizon Lens beside its peers" in text and "bytes per (token, layer)" in text
    assert corpus["diff"]["common_tasks"] > 0 and "Run-set diff of two agents" in text
    modes = data["modes"]  # a 2,000-run corpus has fewer than 10^5 failed steps: all of them
    failed = open_store(tmp_path / "data" / "corpus-2000").scalar("SELECT count(*) FROM steps WHERE NOT check_passed")
    assert modes["where"] is None and modes["failed_steps"] == failed
    rows = {r["variant"]: r for r in modes["rows"]}
    assert set(rows) == {"modes", "tfidf", "modes_distinct", "tfidf_distinct"}
    assert all(r["failed_steps"] == failed and r["peak_rss_mb"] > 0 for r in rows.values())
    assert rows["modes_distinct"]["distinct_texts"] == failed > rows["modes"]["distinct_texts"]
    assert rows["tfidf"]["ratio_to_tfidf"] == 1 and rows["modes"]["ratio_to_tfidf"] > 0
    assert f"## Failure modes on {failed:,} failed steps" in text
    assert "export" not in data  # --no-export (test_bench_export times it on its own)


def test_bench_export(scaled: Path, tmp_path: Path) -> None:
    """Exporting every run, beside pyarrow reads of the same rows: the same runs and steps, ratios to the read."""
    from horizonlens.bench.export import bench_export, report_lines
    from horizonlens.bench.run import _child

    export = bench_export(scaled, tmp_path, _child, formats=("openai-jsonl",))
    base = export["pyarrow_read"]
    assert base["runs"] == export["pyarrow_batches"]["runs"] == 3000  # the baselines read the same rows ...
    assert base["steps"] == export["pyarrow_batches"]["steps"]
    row = export["openai-jsonl"]  # ... that the export wrote
    assert (row["runs"], row["steps"]) == (base["runs"], base["steps"])
    assert row["runs_per_s_vs_pyarrow_read"] == pytest.approx(row["runs_per_s"] / base["runs_per_s"])
    assert row["peak_rss_vs_pyarrow_read"] == pytest.approx(row["peak_rss_mb"] / base["peak_rss_mb"])
    assert row["bytes"] > 0 and not (tmp_path / "export-openai-jsonl").exists()  # the export is removed after
    lines = "\n".join(report_lines({"3000": export}))
    assert "## Export (training data)" in lines and "| 3,000 | export openai-jsonl | 3,000 |" in lines


def test_bench_pages_only_merges_into_the_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench --pages-only`: the pages of each scale's corpus (generated once, aggregates brought up to date) go
    into results-SCALE.json beside what a full run wrote, and PAGES.md gets their table. The browser is faked
    here (test_browser.py times real pages); what is checked is which corpora are timed and what is kept."""
    from typer.testing import CliRunner

    from horizonlens.bench import run as bench_run
    from horizonlens.bench.pages import with_floor
    from horizonlens.cli import app

    timed: list[tuple[str, bool]] = []

    def fake_pages(corpus: Path, checkpoint: Path, n: int, repeats: int, parts: bool = False) -> dict:
        timed.append((corpus.name, parts))
        assert open_store(corpus).has_aggregates and repeats == 3  # the pages' repeats of a full run
        floor = {"first_load_s": 1.0, "interaction_s": 0.1, "failures": []}
        page = {"first_load_s": 2.0, "cold_s": 3.0, "interaction_s": 0.2, "interaction": "Next", "failures": []}
        part = {"first_load_s": 1.5, "cold_s": 1.5, "interaction_s": None, "interaction": "", "failures": []}
        return with_floor({"floor": floor, "trajectory": page, **({"floor+table": part} if parts else {})})

    monkeypatch.setattr(bench_run, "page_timings", fake_pages)
    (tmp_path / "results-tiny.json").write_text(json.dumps({"scale": "tiny", "corpora": {"2000": {"kept": True}}}))
    result = CliRunner().invoke(app, ["bench", "--scale", "tiny", "--out", str(tmp_path), "--repeats", "1",
                                      "--pages-only"])
    assert result.exit_code == 0, result.output
    assert timed == [("corpus-bundled", True), ("corpus-2000", False)]  # the floor's parts: once, bundled
    data = json.loads((tmp_path / "results-tiny.json").read_text())
    assert data["corpora"] == {"2000": {"kept": True}} and data["page_errors"] == []  # the full run's figures stay
    rows = data["pages"]["trajectory"]
    assert [(r.get("corpus"), r["trajectories"]) for r in rows] == [("bundled", 2400), (None, 2000)]
    assert all(r["ratio"] == 2.0 and r["floor_s"] == 1.0 for r in rows)
    text = (tmp_path / "PAGES.md").read_text()
    assert "--pages-only" in text and "| trajectory | 2,000 | 2.00 s | 1.00 s | 2.00× |" in text
    assert "| trajectory | 2,000 | " in text and text.count("| missed |") == 2  # 2× the floor: the goal missed
    part = next(line for line in text.splitlines() if line.startswith("| floor+table | 2,400 (bundled) |"))
    assert "1.50×" in part and part.endswith("|  |")  # a part of a page has a cost, not a goal
    assert "without a search index" in text and "2,000" in text.split("without a search index")[1].split("\n")[0]
    refused = CliRunner().invoke(app, ["bench", "--scale", "tiny", "--out", str(tmp_path), "--pages-only",
                                       "--no-app"])
    assert refused.exit_code != 0 and "times only the pages" in refused.output
