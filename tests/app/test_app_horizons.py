"""Compounding: one horizon vocabulary, checks and steps side by side with the checks per step between them."""

from __future__ import annotations

from pathlib import Path

import pytest

from horizonlens.metrics import compounding
from horizonlens.query import TrajectoryFilter, open_store
from tests.support.app import make_app


def _horizons(at):  # noqa: ANN001, ANN202 - an AppTest; the table of horizons it shows
    return next(d.value for d in at.dataframe if "horizon" in d.value.columns)


def test_horizons_in_both_units(monkeypatch, tiny_corpus: Path) -> None:
    at = make_app(monkeypatch, tiny_corpus, page="compounding")
    at.run()
    assert not at.exception, at.exception
    store = open_store(tiny_corpus)
    table = _horizons(at)
    per_step = compounding.checks_per_step(store)
    cps = float(per_step["checks_per_step"].iloc[0])
    h50 = float(compounding.step_error_rate(store)["horizon_50"].iloc[0])
    row = table[(table["level"] == "50%") & (table["horizon"] == "independent errors (H)")].iloc[0]
    assert row["checks"] == pytest.approx(h50) and row["steps"] == pytest.approx(h50 / cps)
    fit = compounding.success_vs_length(store)["fits"]
    success = table[(table["level"] == "50%") & (table["horizon"] == "success vs step count (fit)")].iloc[0]
    assert success["steps"] == pytest.approx(fit["steps_at_50"].iloc[0])
    text = next(c.value for c in at.caption if c.value.startswith("Here a step carries"))
    assert f"{cps:.2f} checks on average" in text and f"{h50:.1f} checks ≈ {h50 / cps:.1f} steps" in text
    assert "The same horizons in checks" not in text  # the chart's caption points here instead
    at.session_state["comp_tab"] = "Success vs length"
    at.run()
    assert any("the same horizons in checks" in c.value for c in at.caption)
    at.session_state["comp_tab"] = "Horizons"
    at.run()

    # a facet and a filter: per group, at each group's own rate
    at.selectbox(key="comp_facet").select("domain").run()
    at.multiselect(key="comp_domains").select("search").select("engineering").run()
    table = _horizons(at)
    assert set(table["group"]) == {"search", "engineering"}
    flt = TrajectoryFilter(domains=["search", "engineering"])
    rates = compounding.checks_per_step(store, "domain", flt).set_index("group")["checks_per_step"]
    for grp, part in table.groupby("group"):
        assert part["checks_per_step"].round(6).unique().tolist() == [round(float(rates[grp]), 6)]
    assert any("Per group" in c.value for c in at.caption)
