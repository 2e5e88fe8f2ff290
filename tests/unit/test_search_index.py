"""The word index: built from the corpus, answers word searches like a scan would, goes stale on change."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from horizonlens.derived.search_index import build_index, index_is_fresh, query_words
from horizonlens.errors import StoreError
from horizonlens.ingest import import_paths
from horizonlens.query import TrajectoryFilter, open_store
from horizonlens.query.filters import FilterContext
from tests.support.corpora import HOSTILE


@pytest.fixture()
def corpus(tmp_path: Path, tiny_corpus: Path) -> Path:
    root = Path(shutil.copytree(tiny_corpus, tmp_path / "c"))
    shutil.rmtree(root / "index", ignore_errors=True)
    return root


def _words_by_trajectory(root: Path) -> dict[str, set[str]]:
    """Independent reference: every word of each trajectory's task and step fields, in Python."""
    out: dict[str, set[str]] = {}
    for t in pq.read_table(root / "trajectories").to_pylist():
        out.setdefault(t["trajectory_id"], set()).update(re.findall(r"[a-z0-9_]+", (t["task"] or "").lower()))
    for s in pq.read_table(root / "steps").to_pylist():
        text = " ".join([s["reasoning"] or "", s["message"] or "", s["knowledge"] or "",
                         *[f"{c['name']} {c['arguments']}" for c in s["tool_calls"]],
                         *[o["content"] or "" for o in s["observations"]]])
        out.setdefault(s["trajectory_id"], set()).update(re.findall(r"[a-z0-9_]+", text.lower()))
    return out


@pytest.mark.parametrize("query", ["insufficient balance", "FAILED test", "Error", "kinetic energy joules",
                                   "doc-0012", "zzz_no_such_word"])
def test_word_search_matches_a_python_reference(corpus: Path, query: str) -> None:
    build_index(corpus)
    store = open_store(corpus)
    assert store.has_word_index
    ref = _words_by_trajectory(corpus)
    words = set(query_words(query))
    expected = {t for t, ws in ref.items() if words <= ws}
    page = store.list_trajectories(TrajectoryFilter(text=query, text_mode="words"), limit=1000)
    assert set(page.rows["trajectory_id"].to_pylist()) == expected and page.total == len(expected)
    # the same in plain SQL over the index's views (what a filter without the store's resolved hits runs)
    clauses, params = TrajectoryFilter(text=query, text_mode="words").clauses(FilterContext(word_index=True))
    ids = store.query(f"SELECT t.trajectory_id FROM trajectories t WHERE {clauses[0]}", params)
    assert set(ids.column(0).to_pylist()) == expected


def test_exact_mode_still_scans_and_auto_prefers_the_index(corpus: Path) -> None:
    store = open_store(corpus)
    assert not store.has_word_index
    exact = store.list_trajectories(TrajectoryFilter(text="failed test"), limit=1000).total
    with pytest.raises(StoreError, match="no up-to-date word index"):
        store.list_trajectories(TrajectoryFilter(text="failed", text_mode="words"))
    build_index(corpus)
    assert store.refresh_index()
    assert store.list_trajectories(TrajectoryFilter(text="failed test", text_mode="exact"), limit=1000).total == exact
    words = store.list_trajectories(TrajectoryFilter(text="failed test"), limit=1000).total  # auto: index
    assert words >= exact  # every exact match also has both words


def test_index_goes_stale_and_import_rebuilds_it(corpus: Path, tmp_path: Path) -> None:
    build_index(corpus)
    assert index_is_fresh(corpus)
    from horizonlens.corpus.files import corpus_dataset

    with corpus_dataset(corpus).transaction() as txn:  # any commit is a new corpus state
        txn.update(note="touched")
        txn.commit()
    assert not index_is_fresh(corpus)
    build_index(corpus)
    src = tmp_path / "chat.json"
    src.write_text(json.dumps([{"role": "user", "content": HOSTILE + " quokka"}]))
    import_paths([src], corpus)
    assert index_is_fresh(corpus)  # the import rebuilt the index it found
    store = open_store(corpus)
    assert store.list_trajectories(TrajectoryFilter(text="quokka"), limit=10).total == 1


def test_hostile_query_words(corpus: Path) -> None:
    build_index(corpus)
    store = open_store(corpus)
    for q in ["'; DROP TABLE steps; --", "%_\\", "<script>", "漢字 🚀"]:
        store.list_trajectories(TrajectoryFilter(text=q), limit=5)
    assert store.scalar("SELECT count(*) FROM steps") > 0


def test_an_index_in_the_older_format_is_named_and_rebuilt(corpus: Path) -> None:
    index = corpus / "index"
    (index / "texts").mkdir(parents=True)
    (index / "texts" / "part-0.arrow").write_bytes(b"old")
    (index / "manifest.json").write_text(json.dumps({"version": 3, "kind": "search index", "files": [
        {"table": "texts", "path": "texts/part-0.arrow", "rows": 1, "bytes": 3}]}))
    store = open_store(corpus)
    assert not store.has_word_index
    problem = " ".join(store.problems)
    assert "older format" in problem and "texts" in problem and "horizonlens index" in problem
    from typer.testing import CliRunner

    from horizonlens.cli import app

    out = CliRunner().invoke(app, ["index", str(corpus)])
    assert out.exit_code == 0, out.output
    assert "replacing an older search index with a text copy (texts): 1 file(s) removed" in out.output
    assert not (index / "texts" / "part-0.arrow").exists()  # the text copy is gone with the old format
    assert index_is_fresh(corpus) and store.refresh_index() and not store.problems
