"""Horizons in both units: checks per step of a selection, and every horizon converted at it."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from horizonlens.metrics import compounding
from horizonlens.query import TrajectoryFilter, open_store


def test_checks_per_step_equals_pandas(tiny_corpus: Path) -> None:
    store = open_store(tiny_corpus)
    steps = pq.read_table(tiny_corpus / "steps", columns=["trajectory_id", "check_passed"]).to_pandas()
    trajs = pq.read_table(tiny_corpus / "trajectories").to_pandas()
    for by, flt in ((None, None), ("domain", None), (None, TrajectoryFilter(has_failed_checks=True))):
        got = compounding.checks_per_step(store, by, flt).set_index("group")
        chosen = trajs if flt is None else trajs[trajs["n_failed_checks"] > 0]
        groups = chosen.groupby(by) if by else [("all", chosen)]
        for grp, part in groups:
            checks = int(steps[steps["trajectory_id"].isin(part["trajectory_id"])]["check_passed"].notna().sum())
            assert got.loc[grp, "checks"] == checks and got.loc[grp, "steps"] == part["n_steps"].sum()
            assert got.loc[grp, "checks_per_step"] == pytest.approx(checks / part["n_steps"].sum())


def test_horizons_hand_made() -> None:
    p = 0.1
    rate = pd.DataFrame({"group": ["all"], "horizon_50": [compounding.horizon(p, 0.5)],
                         "horizon_80": [compounding.horizon(p, 0.8)]})
    km = pd.DataFrame({"group": "all", "t": [1, 2, 3, 4], "survival": [0.9, 0.79, 0.6, 0.45]})
    fits = pd.DataFrame({"group": ["all"], "steps_at_50": [40.0], "steps_at_80": [None]})
    per_step = pd.DataFrame({"group": ["all"], "checks": [50], "steps": [100], "checks_per_step": [0.5]})
    table = compounding.horizons(rate, km, fits, per_step).set_index(["level", "horizon"])
    h50 = math.log(0.5) / math.log(0.9)
    row = table.loc[("50%", "independent errors (H)")]
    assert row["checks"] == pytest.approx(h50) and row["steps"] == pytest.approx(h50 / 0.5)
    assert table.loc[("50%", "first failed check, observed"), "checks"] == 4  # first t with S(t) <= 0.5
    assert table.loc[("80%", "first failed check, observed"), "checks"] == 2
    success = table.loc[("50%", "success vs step count (fit)")]
    assert success["steps"] == 40 and success["checks"] == pytest.approx(20)
    assert pd.isna(table.loc[("80%", "success vs step count (fit)"), "steps"])  # no fit: nothing invented
    # a survival curve that never falls to the level: no observed horizon
    table = compounding.horizons(rate, km[km["t"] <= 2], fits, per_step).set_index(["level", "horizon"])
    assert pd.isna(table.loc[("50%", "first failed check, observed"), "checks"])


def test_horizons_on_a_corpus(tiny_corpus: Path) -> None:
    store = open_store(tiny_corpus)
    for by in (None, "domain"):
        table = compounding.horizons(compounding.step_error_rate(store, by), compounding.survival(store, by),
                                     compounding.success_vs_length(store, by, n_boot=0)["fits"],
                                     compounding.checks_per_step(store, by))
        known = table.dropna(subset=["checks", "steps"])
        assert (known["checks"] / known["steps"]).round(9).tolist() == known["checks_per_step"].round(9).tolist()
        assert set(table["horizon"]) == {"independent errors (H)", "first failed check, observed",
                                         "success vs step count (fit)"}
