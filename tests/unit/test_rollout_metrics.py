"""Rollout vs replay metrics against a hand-computed case."""

from __future__ import annotations

import numpy as np
import pytest

from horizonlens.metrics.rollout import NEAR_TIE_MARGIN, compare_topk, comparison_tables

# three tokens, two MoE layers (real numbers 1 and 3), top-2
REPLAY = np.array([[[1, 2], [3, 4]],
                   [[1, 2], [3, 4]],
                   [[5, 6], [7, 0]]])
ROLLOUT = np.array([[[2, 1], [3, 4]],     # same sets; layer 1's slots swapped: top-1 differs, set agrees
                    [[1, 9], [8, 9]],     # layer 1: one of two shared (Jaccard 1/3); layer 3: none shared
                    [[5, 6], [-1, -1]]])  # layer 3 not returned by the engine: the token is not compared
MARGIN = np.array([[0.5, 0.5], [NEAR_TIE_MARGIN / 10, 0.2], [0.3, 0.3]])


def test_per_token_and_layer_values() -> None:
    c = compare_topk(REPLAY, ROLLOUT, MARGIN)
    assert c.valid.tolist() == [[True, True], [True, True], [True, False]]
    assert c.overlap.tolist() == [[2, 2], [1, 0], [2, 0]]
    assert c.set_match.tolist() == [[True, True], [False, False], [True, False]]
    np.testing.assert_allclose(c.jaccard[:2], [[1, 1], [1 / 3, 0]])
    assert c.top1_match.tolist() == [[False, True], [True, False], [True, False]]
    assert c.near_tie is not None and c.near_tie.tolist() == [[False, False], [True, False], [False, False]]


def test_tables_fold_by_step_segment_and_layer() -> None:
    c = compare_topk(REPLAY, ROLLOUT, MARGIN)
    layers, steps = comparison_tables("t", c, [1, 3], np.array([0, 1, 1]), np.array(["reasoning", "tool_call",
                                                                                      "tool_call"]))
    rows = {(r["step"], r["layer"]): r for r in layers.to_pylist()}
    assert set(rows) == {(0, 1), (0, 3), (1, 1), (1, 3)}  # token 2 is not compared anywhere
    assert rows[(0, 1)] == {"trajectory_id": "t", "step": 0, "segment": "reasoning", "layer": 1, "tokens": 1,
                            "set_mismatch": 0, "top1_mismatch": 1, "jaccard_sum": 1.0, "near_ties": 0,
                            "near_tie_mismatch": 0}
    assert rows[(1, 1)]["set_mismatch"] == 1 and rows[(1, 1)]["near_tie_mismatch"] == 1
    assert rows[(1, 1)]["jaccard_sum"] == pytest.approx(1 / 3)
    assert rows[(1, 3)]["set_mismatch"] == 1 and rows[(1, 3)]["near_tie_mismatch"] == 0
    assert rows[(1, 3)]["top1_mismatch"] == 1 and rows[(1, 3)]["jaccard_sum"] == 0
    by_step = {r["step"]: r for r in steps.to_pylist()}
    assert by_step[0] == {"trajectory_id": "t", "step": 0, "segment": "reasoning", "tokens": 1,
                            "any_mismatch": 0, "any_top1_mismatch": 1, "near_tie_only": 0}
    # token 1 differs in both layers, one of them with a clear margin: not explained by near-ties alone
    assert by_step[1]["tokens"] == 1 and by_step[1]["any_mismatch"] == 1 and by_step[1]["near_tie_only"] == 0


def test_near_tie_only_when_every_flip_is_a_near_tie() -> None:
    margin = MARGIN.copy()
    margin[1, 1] = 0.0  # now both of token 1's flips sit on near-ties
    _, steps = comparison_tables("t", compare_topk(REPLAY, ROLLOUT, margin), [1, 3], np.array([0, 1, 1]),
                                 np.array(["reasoning", "tool_call", "tool_call"]))
    assert {r["step"]: r["near_tie_only"] for r in steps.to_pylist()} == {0: 0, 1: 1}


def test_without_margins_near_tie_columns_are_null() -> None:
    layers, steps = comparison_tables("t", compare_topk(REPLAY, ROLLOUT), [1, 3], np.zeros(3, int),
                                      np.array(["message"] * 3))
    assert set(layers.column("near_ties").to_pylist()) == {None}
    assert set(steps.column("near_tie_only").to_pylist()) == {None}
    assert sum(layers.column("set_mismatch").to_pylist()) == 2


def test_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match="one shape"):
        compare_topk(REPLAY, ROLLOUT[:, :1])
