"""Exact-text search through the search index equals a plain scan (ILIKE over every field), needle by needle.

Needles are drawn at random from the corpus text (rare and common substrings, across word boundaries, with
punctuation), plus hand-picked punctuation-only, non-ASCII, case-folding, long-separator and absent ones. Both
ways the index answers are checked: from the postings alone, and by reading the candidates' Parquet text.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from horizonlens.corpus.text import step_text_parts
from horizonlens.derived.search_index import SEP_KEEP, WORD, Cond, PairCond, build_index, needle_plan
from horizonlens.query import TrajectoryFilter, open_store
from horizonlens.query.filters import FilterContext, where_sql
from tests.support.corpora import HOSTILE, SAMPLE_CORPUS, make_corpus, step_row, traj_row

HAND_PICKED = ["insufficient balance", "Error", "error:", ": ", "{\"", "  ", "a", "100%", "_", "\\", "%_\\",
               "é", "ünïcødé", "漢字", "🚀", "ISTANBUL", "istanbul", "İstanbul", "straße", "STRASSE", "ΣΑΣ", "σας",
               "KELVIN\u212a", "<script>", "'; DROP", "zzz_no_such_text", "FAILED test_", "ance bal", "\t", "--",
               " bal", "error: ", "tal — ", "— be", "alpha " + "—" * 20 + " beta", "a " + "—" * 20 + " b",
               "—" * (SEP_KEEP + 1) + " beta", "alpha " + "—" * (SEP_KEEP - 1), "x\x01y", "\x02z", "z\x03", "y\x02"]
UNICODE_TEXT = ["Flights from İstanbul to Zürich", "Die Straße ist gesperrt", "ΣΑΣ ΚΑΛΗΜΕΡΑ", "漢字テスト 🚀 launch",
                "Temperature 300 \u212a (kelvin sign)", "naïve café résumé", "tab\tseparated\tvalues",
                "alpha " + "—" * 20 + " beta", "alpha " + "—" * 21 + " beta", "capital — beta", "x\x01y\x02z\x03w"]


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
    ids = store.query(f"SELECT t.trajectory_id FROM trajectories t{where_sql(clauses)}", params)
    return set(ids.column(0).to_pylist()), store.list_trajectories(flt, limit=5).total


@pytest.fixture(scope="module")
def indexed_sample(tmp_path_factory: pytest.TempPathFactory):
    root = Path(shutil.copytree(SAMPLE_CORPUS, tmp_path_factory.mktemp("exact") / "c"))
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
        resolved = store.lists.exact(needle)
        assert resolved is not None, needle  # the index answered
        if needle_plan(store.scalar("SELECT lower(?)", [needle])).exact:
            assert resolved[0].checked == 0, needle  # from the postings alone: no text was read
        assert got == expected and total == len(expected), (needle, len(got), len(expected))


def test_fifty_random_needles_equal_a_plain_scan(indexed_sample) -> None:
    needles = random_needles(indexed_sample.root, 50, seed=13)
    assert sum(not WORD.search(n.lower()) for n in needles) >= 2  # punctuation/space-only needles are drawn
    assert sum(needle_plan(n.lower()).exact for n in needles) >= 10  # some answered by the postings alone
    assert sum(not needle_plan(n.lower()).exact for n in needles) >= 10  # and some by reading text
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


def test_needle_plans_say_which_queries_the_postings_answer_alone() -> None:
    plan = needle_plan("ance bal")  # a suffix, the exact separator, a prefix: one pair
    assert plan.pairs == [PairCond(Cond("suffix", "ance"), Cond("equal", " "), Cond("prefix", "bal"))] and plan.exact
    assert needle_plan("balance") .word == Cond("contains", "balance") and needle_plan("balance").exact
    assert needle_plan(" bal").pairs == [PairCond(Cond("any"), Cond("suffix", " "), Cond("prefix", "bal"))]
    assert needle_plan("error:").pairs == [PairCond(Cond("suffix", "error"), Cond("prefix", ":"), Cond("any"))]
    assert needle_plan(" bal").exact and needle_plan("error:").exact
    three = needle_plan("x: y.z")  # two pairs: both must occur, but maybe apart, so the text is read
    assert three.pairs == [PairCond(Cond("suffix", "x"), Cond("equal", ": "), Cond("equal", "y")),
                           PairCond(Cond("equal", "y"), Cond("equal", "."), Cond("prefix", "z"))]
    assert not three.exact
    long_sep = needle_plan("a" + "-" * (SEP_KEEP + 4) + "b")  # kept as its two ends only: not exact
    assert long_sep.pairs[0].sep == Cond("equal", "-" * SEP_KEEP + "\x01" + "-" * SEP_KEEP) and not long_sep.exact
    assert needle_plan(": !").reads_everything and not needle_plan(": !").exact
