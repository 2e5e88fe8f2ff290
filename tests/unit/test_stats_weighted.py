"""Weighted statistics: counts in place of repeated rows give the same estimates (the aggregates rely on it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from horizonlens.metrics.stats import fit_logistic, fit_logistic_many, kaplan_meier, pass_hat_k


def test_kaplan_meier_with_counts_equals_one_row_per_subject() -> None:
    rng = np.random.default_rng(1)
    durations = rng.integers(1, 30, 500)
    events = (rng.random(500) < 0.5).astype(int)
    rows = kaplan_meier(durations, events)
    cells = pd.DataFrame({"d": durations, "e": events}).value_counts().reset_index(name="n")
    counted = kaplan_meier(cells["d"].to_numpy(), cells["e"].to_numpy(), cells["n"].to_numpy())
    pd.testing.assert_frame_equal(rows, counted, check_exact=True, check_dtype=False)


def test_weighted_logistic_equals_repeated_rows_and_batched_fits_equal_single_fits() -> None:
    rng = np.random.default_rng(2)
    x = np.repeat(np.log2(np.arange(2, 60)), 2)
    y = np.tile([0.0, 1.0], len(x) // 2)
    w = rng.integers(0, 40, len(x)).astype(float)
    repeated = fit_logistic(np.repeat(x, w.astype(int)), np.repeat(y, w.astype(int)))
    weighted = fit_logistic(x, y, w)
    assert weighted.converged and repeated.converged
    assert weighted.intercept == pytest.approx(repeated.intercept, abs=1e-9)
    assert weighted.slope == pytest.approx(repeated.slope, abs=1e-9)
    resamples = rng.multinomial(int(w.sum()), w / w.sum(), size=50).astype(float)
    resamples[0] = 0
    resamples[0, :2] = 5  # one length only: nothing to fit
    for one, many in zip((fit_logistic(x, y, r) for r in resamples), fit_logistic_many(x, y, resamples), strict=True):
        assert one.converged == many.converged
        assert many.intercept == pytest.approx(one.intercept, abs=1e-10)
        assert many.slope == pytest.approx(one.slope, abs=1e-10)


def test_pass_hat_k_with_task_counts_equals_one_row_per_task() -> None:
    tasks = pd.DataFrame({"n": [4, 4, 4, 3, 3, 1, 4], "c": [4, 2, 2, 1, 0, 1, 4]})
    counted = tasks.value_counts().reset_index(name="tasks")
    pd.testing.assert_frame_equal(pass_hat_k(tasks), pass_hat_k(counted), check_exact=False, rtol=1e-15)
