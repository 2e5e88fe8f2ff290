"""Explore's headline figures and charts under a filter, against pandas over the corpus files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from horizonlens.figures.corpus import group_rates as group_rates_figure
from horizonlens.figures.corpus import length_edges
from horizonlens.metrics import overview
from horizonlens.query import TrajectoryFilter, open_store

FILTERS = {
    "none": None,
    "facets": TrajectoryFilter(domains=["search", "engineering"], outcomes=["failure"]),  # the cube answers
    "steps": TrajectoryFilter(min_steps=10, max_steps=40),  # the cube answers (n_steps is a cube dimension)
    "checks": TrajectoryFilter(has_failed_checks=True, agents=[]),  # one row per trajectory
}


def _frames(corpus: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    trajs = pq.read_table(corpus / "trajectories").to_pandas()
    steps = pq.read_table(corpus / "steps", columns=["trajectory_id", "check_passed"]).to_pandas()
    return trajs, steps


def _select(trajs: pd.DataFrame, name: str) -> pd.DataFrame:
    if name == "facets":
        return trajs[trajs["domain"].isin(["search", "engineering"]) & (trajs["outcome"] == "failure")]
    if name == "steps":
        return trajs[trajs["n_steps"].between(10, 40)]
    if name == "checks":
        return trajs[trajs["n_failed_checks"] > 0]
    return trajs


@pytest.mark.parametrize("name", list(FILTERS))
def test_filtered_overview_equals_pandas(tiny_corpus: Path, name: str) -> None:
    store = open_store(tiny_corpus)
    trajs, steps = _frames(tiny_corpus)
    chosen = _select(trajs, name)
    assert len(chosen) > 0
    got = overview.summary(store, FILTERS[name])
    known = chosen[chosen["outcome"].isin(["success", "failure"])]
    assert got["trajectories"] == len(chosen)
    assert got["tasks"] == chosen["task_id"].nunique()
    assert got["steps"] == chosen["n_steps"].sum() and got["tokens"] == chosen["n_tokens"].sum()
    assert got["success_rate"] == pytest.approx((known["outcome"] == "success").mean())
    assert got["share_with_failed_checks"] == pytest.approx((chosen["n_failed_checks"] > 0).mean())

    rates = overview.group_rates(store, "domain", FILTERS[name]).set_index("domain")
    checked = steps[steps["check_passed"].notna()].merge(chosen[["trajectory_id", "domain"]], on="trajectory_id")
    for domain, part in chosen.groupby("domain"):
        row = rates.loc[domain]
        assert row["trajectories"] == len(part)
        k = part[part["outcome"].isin(["success", "failure"])]
        assert row["success_rate"] == pytest.approx((k["outcome"] == "success").mean())
        mine = checked[checked["domain"] == domain]
        assert row["failed_check_rate"] == pytest.approx((~mine["check_passed"].astype(bool)).mean())
    assert set(rates.index) == set(chosen["domain"])

    edges = length_edges(int(trajs["n_steps"].max()))
    counts = overview.length_histogram(store, "n_steps", edges, FILTERS[name])
    for outcome, part in chosen.groupby("outcome"):
        expected, _ = np.histogram(part["n_steps"].clip(lower=1), bins=edges)
        mine = counts[counts["outcome"] == outcome]
        hist = np.zeros(len(edges) - 1, dtype=int)
        hist[mine["bin"].to_numpy(dtype=int)] = mine["trajectories"].to_numpy()
        assert hist.tolist() == expected.tolist()


def test_unfiltered_overview_equals_the_store(tiny_corpus: Path) -> None:
    store = open_store(tiny_corpus)
    whole = store.summary()
    mine = overview.summary(store)
    assert {k: mine[k] for k in whole} == whole
    by = store.by_group("agent").to_pandas()
    pd.testing.assert_frame_equal(overview.group_rates(store, "agent")[["agent", "trajectories", "success_rate",
                                                                        "failed_check_rate", "tokens"]],
                                  by[["agent", "trajectories", "success_rate", "failed_check_rate", "tokens"]],
                                  check_dtype=False)
    with pytest.raises(Exception, match="cannot group by"):
        overview.group_rates(store, "task; select 1")


def test_group_rates_figure_marks_the_whole_corpus(tiny_corpus: Path) -> None:
    store = open_store(tiny_corpus)
    flt = TrajectoryFilter(outcomes=["failure"])
    fig = group_rates_figure(overview.group_rates(store, "domain", flt), "domain",
                             overview.group_rates(store, "domain"), "12 of 48 trajectories")
    names = [t.name for t in fig.data]
    assert names == ["success rate", "failed-check rate", "whole corpus", "whole corpus"]
    whole = overview.group_rates(store, "domain").set_index("domain")
    assert list(fig.data[2].y) == pytest.approx(whole.loc[list(fig.data[0].x), "success_rate"].tolist())
    assert "12 of 48 trajectories" in fig.layout.title.text
