"""Aligning a rollout's token ids with the replay's rendering: hand-made insertions, deletions, substitutions."""

from __future__ import annotations

import difflib

import numpy as np
import pytest

from horizonlens.model.align import SMALL_GAP, align_tokens


def _check_pairs(a: list[int], b: list[int]) -> tuple[np.ndarray, np.ndarray]:
    al = align_tokens(a, b)
    ia, ib = al.pairs()
    assert (np.asarray(a)[ia] == np.asarray(b)[ib]).all()  # never pairs two different ids
    assert (np.diff(ia) > 0).all() and (np.diff(ib) > 0).all()  # increasing in both
    return ia, ib


def test_identical_sequences_compare_position_by_position() -> None:
    a = list(range(100, 600))
    al = align_tokens(a, a)
    assert al.identical and al.share_a == al.share_b == 1.0 and al.blocks == ((0, 0, 500),)


def test_inserted_system_prompt_shifts_everything() -> None:
    a = list(range(1000, 1300))
    b = [7, 8, 9, 10, 11] + a  # the engine's template added five tokens up front
    ia, ib = _check_pairs(a, b)
    assert not align_tokens(a, b).identical
    np.testing.assert_array_equal(ia, np.arange(300))
    np.testing.assert_array_equal(ib, np.arange(5, 305))


def test_deleted_and_inserted_runs_in_the_middle() -> None:
    a = list(range(2000, 2400))
    b = a[:100] + a[130:250] + [1, 2, 3] + a[250:]  # 30 tokens cut, 3 tokens inserted
    ia, ib = _check_pairs(a, b)
    assert len(ia) == 370
    assert 100 not in ia and 129 not in ia and 130 in ia  # the deleted run has no partner
    assert ib[ia.tolist().index(250)] == 223  # after the insertion, a[250] sits 3 places later than a[130:250]
    al = align_tokens(a, b)
    assert al.share_a == pytest.approx(370 / 400) and al.share_b == pytest.approx(370 / 373)


def test_substituted_token_is_left_out() -> None:
    a = [5, 6, 7, 8, 9, 10]
    b = [5, 6, 99, 8, 9, 10]
    ia, ib = _check_pairs(a, b)
    assert ia.tolist() == [0, 1, 3, 4, 5] and ib.tolist() == [0, 1, 3, 4, 5]


def test_empty_and_disjoint_sequences() -> None:
    assert align_tokens([], [1, 2]).matched == 0
    assert align_tokens([1, 2], []).share_a == 0.0
    assert align_tokens([1, 2, 3], [4, 5, 6]).matched == 0


def _realistic(n: int, seed: int) -> list[int]:
    """Ids with the repetitiveness of rendered text: a small vocabulary, recurring phrases."""
    rng = np.random.default_rng(seed)
    phrases = [rng.integers(0, 300, rng.integers(3, 12)).tolist() for _ in range(60)]
    out: list[int] = []
    while len(out) < n:
        out += phrases[int(rng.integers(0, len(phrases)))] if rng.random() < 0.7 else [int(rng.integers(0, 300))]
    return out[:n]


def _edit(a: list[int], seed: int, edits: int) -> list[int]:
    rng = np.random.default_rng(seed)
    b = list(a)
    for _ in range(edits):
        p = int(rng.integers(0, len(b)))
        kind = rng.random()
        if kind < 0.4:
            del b[p:p + int(rng.integers(1, 40))]
        elif kind < 0.8:
            b[p:p] = rng.integers(0, 300, int(rng.integers(1, 40))).tolist()
        else:
            b[p] = 999
    return b


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_as_many_tokens_as_difflib(seed: int) -> None:
    """difflib (autojunk off) is the reference; the anchored matcher must pair (nearly) as many tokens."""
    a = _realistic(3000, seed)
    b = _edit(a, seed + 100, 12)
    ia, _ = _check_pairs(a, b)
    reference = sum(m.size for m in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks())
    assert len(ia) >= 0.99 * reference


def test_long_sequences_take_the_anchored_path() -> None:
    """Gaps too large for difflib are aligned through unique anchors; the edits are still found."""
    a = _realistic(40_000, 9)
    b = [1, 2, 3] * 20 + a[:15_000] + a[15_050:30_000] + _realistic(500, 10) + a[30_000:]
    assert len(a) * len(b) > SMALL_GAP
    ia, ib = _check_pairs(a, b)
    assert len(ia) >= 40_000 - 50 - 10  # everything but the deleted run (and a few coincidental ids)
    assert len(set(range(15_000, 15_050)) & set(ia.tolist())) < 5  # the deleted run found (almost) no partner
