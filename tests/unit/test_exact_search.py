"""Exact-text search through the search index equals a plain scan (ILIKE over every field), needle by needle.

Needles are drawn at random from the corpus text (rare and common substrings, across word boundaries, with
punctuation), plus hand-picked punctuation-only, non-ASCII, case-folding and absent ones.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from horizonlens.corpus.text import step_text_parts
from horizonlens.derived.search_index import build_index, word_runs
from horizonlens.query import TrajectoryFilter, open_store
from horizonlens.query.filters import FilterContext
from tests.support.corpora import HOSTILE, REPO, make_corpus, step_row, traj_row

SAMPLE = REPO / "sample_data" / "corpus"
HAND_PICKED = ["insufficient balance", "Error", "error:", ": ", "{\"", "  ", "a", "100%", "_", "\\", "%_\\",
               "é", "ünïcødé", "漢字", "🚀", "ISTANBUL", "istanbul", "İstanbul", "straße", "STRASSE", "ΣΑΣ", "σας",
               "KELVIN\u212a", "<script>", "'; DROP", "zzz_no_such_text", "FAILED test_", "ance bal", "\t", "--"]
UNICODE_TEXT = ["Flights from İstanbul to Zürich", "Die Straße ist gesperrt", "ΣΑΣ ΚΑΛΗΜΕΡΑ", "漢字テスト 🚀 launch",
                "Temperature 300 \u212a (kelvin sign)", "naïve café résumé", "tab\tseparated\tvalues"]


def random_needles(root: Path, n: int, seed: int) -> list[str]:
    """Substrings of random fields of random steps (1 to 30 characters), so some are rare and some common."""
    rng = random.Random(seed)
    steps = pq.read_table(root / "steps").to_pylist()
    out: list[str] = []
    while len(out) < n:
        parts = step_text_parts(rng.choice(steps))
        if not parts:
            continue
        text = rng.choice(parts)
        size = rng.choice([1, 2, 3, 4, 6, 9, 14, 20, 30])
        start = rng.randrange(max(1, len(text) - size + 1))
        needle = text[start:start + size]
        if needle.strip("\x00"):
            out.append(needle.upper() if rng.random() < 0.2 else needle)  # case must not matter
    return out


def plain_scan(store, needle: str) -> set[str]:
    """The reference: the exact mode's ILIKE over every field and the task, with no index."""
    clauses, params = TrajectoryFilter(text=needle, text_mode="exact").clauses(FilterContext())
    return set(store.query(f"SELECT t.trajectory_id FROM trajectories t WHERE {clauses[0]}", params)
               .column(0).to_pylist())


def through_index(store, needle: str) -> tuple[set[str], int]:
    """Every match as the store's filter finds it, and the Explore page's total."""
    flt = TrajectoryFilter(text=needle, text_mode="exact")
    clauses, params = store.filter_clauses(flt)
    ids = store.query(f"SELECT t.trajectory_id FROM trajectories t WHERE {' AND '.join(clauses)}", params)
    return set(ids.column(0).to_pylist()), store.list_trajectories(flt, limit=5).total


@pytest.fixture(scope="module")
def indexed_sample(tmp_path_factory: pytest.TempPathFactory):
    if not (SAMPLE / "manifest.json").exists():
        pytest.skip("sample corpus not present")
    root = Path(shutil.copytree(SAMPLE, tmp_path_factory.mktemp("exact") / "c"))
    build_index(root)
    store = open_store(root)
    assert store.has_word_index
    return store


@pytest.fixture(scope="module")
def unicode_corpus(tmp_path_factory: pytest.TempPathFactory):
    """A small corpus whose text has case-folding traps (İ, ß, Σ, the Kelvin sign), CJK, emoji and hostile text."""
    trajs, steps = [], []
    for i, text in enumerate([*UNICODE_TEXT, HOSTILE, "plain ascii insufficient balance here"]):
        tid = f"u{i:02d}-t0"
        trajs.append(traj_row(tid, 2, task=text if i % 2 else f"task {i}"))
        steps.append(step_row(tid, 0, "user", None, message=text))
        steps.append(step_row(tid, 1, reasoning=f"thinking about {text[:5]}",
                              tool_calls=[{"id": "c", "name": "search", "arguments": f'{{"q": "{text[-6:]}"}}'}],
                              observations=[{"call_id": "c", "content": f"result: {text.upper()}"}]))
    root = make_corpus(tmp_path_factory.mktemp("uni") / "c", trajs, steps)
    build_index(root)
    return open_store(root)


def _check(store, needles: list[str]) -> None:
    for needle in needles:
        expected = plain_scan(store, needle)
        got, total = through_index(store, needle)
        assert store.lists.exact(needle) is not None, needle  # the index answered, not a scan
        assert got == expected and total == len(expected), (needle, len(got), len(expected))


def test_fifty_random_needles_equal_a_plain_scan(indexed_sample) -> None:
    needles = random_needles(indexed_sample.root, 50, seed=13)
    assert sum(len(word_runs(n.lower())) == 0 for n in needles) >= 2  # punctuation/space-only needles are drawn
    assert sum(len(n) >= 14 for n in needles) >= 10  # and long, rare ones
    _check(indexed_sample, needles)


def test_hand_picked_needles_equal_a_plain_scan(indexed_sample, unicode_corpus) -> None:
    _check(indexed_sample, HAND_PICKED)
    _check(unicode_corpus, HAND_PICKED + random_needles(unicode_corpus.root, 50, seed=4))


def test_all_words_mode_still_uses_the_word_postings(indexed_sample) -> None:
    store = indexed_sample
    words = store.list_trajectories(TrajectoryFilter(text="balance insufficient", text_mode="words"), limit=1000)
    exact = store.list_trajectories(TrajectoryFilter(text="insufficient balance", text_mode="exact"), limit=1000)
    assert words.total >= exact.total > 0  # every exact match has both words, in any order
    assert set(exact.rows["trajectory_id"].to_pylist()) <= set(words.rows["trajectory_id"].to_pylist())


def test_word_runs_constrain_their_words() -> None:
    runs = word_runs("ance bal")
    assert [(r.text, r.starts_word, r.ends_word) for r in runs] == [("ance", False, True), ("bal", True, False)]
    assert [r.vocab_condition() for r in word_runs("x: y.z")] == ["ends_with(v.word, ?)", "v.word = ?",
                                                                  "starts_with(v.word, ?)"]
    assert word_runs(": !") == []
