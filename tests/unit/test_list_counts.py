"""The Explore list: counts from the aggregate cube equal counts over the trajectories, filter by filter."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from horizonlens.derived.aggregates import build_aggregates
from horizonlens.query import TrajectoryFilter, open_store
from horizonlens.query.filters import FilterContext

FILTERS = [TrajectoryFilter(),
           TrajectoryFilter(domains=["search", "engineering"], outcomes=["failure"], min_steps=10),
           TrajectoryFilter(agents=["a1-student-ckpt-4k"], max_steps=20),
           TrajectoryFilter(teachers=["swe-teacher", "ifeval-teacher"]),
           TrajectoryFilter(sources=["horizonlens-sample"], min_steps=3, max_steps=40),
           TrajectoryFilter(has_failed_checks=True),
           TrajectoryFilter(tool="book_reservation", domains=["tool_calling"])]


@pytest.mark.parametrize("flt", FILTERS, ids=range(len(FILTERS)))
def test_page_and_count_equal_a_scan(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: Path, flt) -> None:
    root = Path(shutil.copytree(tiny_corpus, tmp_path_factory.mktemp("list") / "c"))
    build_aggregates(root)
    store = open_store(root)
    assert store.has_aggregates
    clauses, params = flt.clauses(FilterContext())
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    expected = store.query(f"SELECT t.trajectory_id FROM trajectories t{where} "
                           f"ORDER BY t.n_steps DESC NULLS LAST, t.trajectory_id", params).column(0).to_pylist()
    page = store.list_trajectories(flt, sort="n_steps", descending=True, limit=10, offset=2)
    assert expected and page.total == len(expected)  # every filter here matches something
    assert page.rows["trajectory_id"].to_pylist() == expected[2:12]
