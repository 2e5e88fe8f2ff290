"""The statistics primitives against reference implementations in the test environment (statsmodels)."""

from __future__ import annotations

import numpy as np
import pytest

from horizonlens.metrics.stats import fit_logistic, wilson

statsmodels = pytest.importorskip("statsmodels")


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 1), (0, 13), (4, 13), (13, 13), (1, 1000), (517, 1000),
                                      (3, 7), (999_999, 1_000_000)])
def test_wilson_matches_statsmodels(k: int, n: int) -> None:
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = wilson(k, n)
    ref_lo, ref_hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert float(lo) == pytest.approx(ref_lo, abs=1e-12)
    assert float(hi) == pytest.approx(ref_hi, abs=1e-12)


def test_wilson_vectorised_matches_statsmodels() -> None:
    from statsmodels.stats.proportion import proportion_confint

    rng = np.random.default_rng(3)
    n = rng.integers(1, 500, 200)
    k = rng.integers(0, n + 1)
    lo, hi = wilson(k, n)
    ref_lo, ref_hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    np.testing.assert_allclose(lo, ref_lo, atol=1e-12)
    np.testing.assert_allclose(hi, ref_hi, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logistic_fit_matches_statsmodels_logit(seed: int) -> None:
    import statsmodels.api as sm

    rng = np.random.default_rng(seed)
    x = np.log2(rng.integers(2, 400, 1500).astype(float))  # as the metric uses it: log2 of step counts
    p = 1 / (1 + np.exp(-(3.0 - 0.7 * x)))
    y = (rng.random(x.size) < p).astype(float)
    ours = fit_logistic(x, y)
    ref = sm.Logit(y, sm.add_constant(x)).fit(disp=0)
    assert ours.converged
    assert ours.intercept == pytest.approx(ref.params[0], rel=1e-6, abs=1e-8)
    assert ours.slope == pytest.approx(ref.params[1], rel=1e-6, abs=1e-8)
    # the 50% horizon from the reference parameters
    assert ours.x_at(0.5) == pytest.approx(-ref.params[0] / ref.params[1], rel=1e-6)
