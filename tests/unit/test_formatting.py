"""How values are written for people: hand-written expectations for every kind, and one dash for missing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from horizonlens.figures import formatting as fmt


@pytest.mark.parametrize("missing", [None, float("nan"), np.nan, np.float32("nan"), pd.NA])
def test_missing_values_are_one_dash(missing: object) -> None:
    assert fmt.is_missing(missing)
    for write in (fmt.count, fmt.number, fmt.share, fmt.seconds, fmt.size, fmt.usd):
        assert write(missing) == fmt.MISSING == "—"


@pytest.mark.parametrize("value", [0, 0.0, -1, "", "x", math.inf, np.int64(3)])
def test_present_values_are_not_missing(value: object) -> None:
    assert not fmt.is_missing(value)


def test_counts_numbers_shares() -> None:
    assert fmt.count(1234567) == "1,234,567" and fmt.count(np.int64(0)) == "0" and fmt.count(12.0) == "12"
    assert fmt.number(1234.567) == "1,234.57" and fmt.number(0.5, 1) == "0.5" and fmt.number(2, 0) == "2"
    assert fmt.share(0.4217) == "42%" and fmt.share(0.4217, 1) == "42.2%" and fmt.share(1) == "100%"
    assert fmt.share(np.float64(0.0125), 1) == "1.2%" and fmt.share(-0.5) == "-50%"


def test_seconds_sizes_costs() -> None:
    assert fmt.seconds(0.0123) == "12.3 ms" and fmt.seconds(0) == "0.0 ms"
    assert fmt.seconds(1) == "1.00 s" and fmt.seconds(3725.5) == "3,725.50 s"
    assert fmt.size(0) == "0 B" and fmt.size(1023) == "1,023 B" and fmt.size(1536) == "1.5 KB"
    assert fmt.size(12 * 2**20) == "12.0 MB" and fmt.size(5 * 2**40) == "5,120.0 GB"
    assert fmt.usd(0.000123) == "$0.00012" and fmt.usd(12) == "$12.00000"
