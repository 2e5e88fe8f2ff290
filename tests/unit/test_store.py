"""Parameterized queries over the DuckDB store: every filter, combined, empty, hostile input."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from horizonlens.errors import StoreError
from horizonlens.query import SORTABLE, TrajectoryFilter, open_store
from tests.support.corpora import HOSTILE


@pytest.fixture(scope="module")
def store(tiny_corpus: Path):
    return open_store(tiny_corpus)


@pytest.fixture(scope="module")
def raw(tiny_corpus: Path):
    """The corpus read straight from Parquet with pyarrow: the independent source to check against."""
    return (pq.read_table(tiny_corpus / "trajectories").to_pylist(), pq.read_table(tiny_corpus / "steps").to_pylist())


def _ids(page) -> set[str]:
    return set(page.rows["trajectory_id"].to_pylist())


def test_summary_matches_files(store, raw) -> None:
    trajs, steps = raw
    s = store.summary()
    assert s["trajectories"] == len(trajs) == 48
    assert s["steps"] == len(steps)
    assert s["tokens"] == sum(t["n_tokens"] for t in trajs)
    assert s["success_rate"] == pytest.approx(sum(t["outcome"] == "success" for t in trajs) / len(trajs))


@pytest.mark.parametrize("field,value,pred", [
    ("domains", ["search", "science"], lambda t: t["domain"] in ("search", "science")),
    ("agents", ["dense-7b-baseline"], lambda t: t["agent"] == "dense-7b-baseline"),
    ("teachers", ["swe-teacher"], lambda t: t["teacher"] == "swe-teacher"),
    ("outcomes", ["failure"], lambda t: t["outcome"] == "failure"),
    ("has_failed_checks", True, lambda t: t["n_failed_checks"] > 0),
    ("has_failed_checks", False, lambda t: t["n_failed_checks"] == 0),
    ("min_steps", 30, lambda t: t["n_steps"] >= 30),
    ("max_steps", 18, lambda t: t["n_steps"] <= 18),
])
def test_each_filter(store, raw, field, value, pred) -> None:
    trajs, _ = raw
    page = store.list_trajectories(TrajectoryFilter(**{field: value}), limit=1000)
    expected = {t["trajectory_id"] for t in trajs if pred(t)}
    assert expected, "fixture should exercise this filter"
    assert _ids(page) == expected and page.total == len(expected)


def test_tool_and_text_filters(store, raw) -> None:
    trajs, steps = raw
    with_tool = {s["trajectory_id"] for s in steps if any(c["name"] == "edit_file" for c in s["tool_calls"])}
    assert _ids(store.list_trajectories(TrajectoryFilter(tool="edit_file"), limit=1000)) == with_tool
    needle = "FAILED test_"
    hits = {s["trajectory_id"] for s in steps
            if any(needle.lower() in (o["content"] or "").lower() for o in s["observations"])}
    assert hits
    assert _ids(store.list_trajectories(TrajectoryFilter(text=needle, text_mode="exact"), limit=1000)) == hits


def test_combined_filters_and_pagination(store, raw) -> None:
    trajs, _ = raw
    flt = TrajectoryFilter(domains=["search", "engineering", "general"], outcomes=["success"], min_steps=8)
    expected = sorted((t for t in trajs if t["domain"] in ("search", "engineering", "general")
                       and t["outcome"] == "success" and t["n_steps"] >= 8),
                      key=lambda t: (-t["n_steps"], t["trajectory_id"]))
    pages = [store.list_trajectories(flt, sort="n_steps", descending=True, offset=o, limit=5) for o in range(0, 40, 5)]
    got = [tid for p in pages for tid in p.rows["trajectory_id"].to_pylist()]
    assert got == [t["trajectory_id"] for t in expected]
    assert all(p.total == len(expected) for p in pages)


def test_empty_result(store) -> None:
    page = store.list_trajectories(TrajectoryFilter(domains=["no-such-domain"]))
    assert page.total == 0 and page.rows.num_rows == 0
    assert store.trajectory("nope") is None
    assert store.steps("nope").num_rows == 0


def test_sort_column_is_allow_listed(store) -> None:
    for col in SORTABLE:
        store.list_trajectories(sort=col, limit=1)
    with pytest.raises(StoreError, match="cannot sort"):
        store.list_trajectories(sort="n_steps; DROP TABLE steps")


def test_steps_window_and_find(store, raw) -> None:
    trajs, steps = raw
    tid = max(trajs, key=lambda t: t["n_steps"])["trajectory_id"]
    all_steps = store.steps(tid)
    assert all_steps["step"].to_pylist() == list(range(all_steps.num_rows))
    assert store.steps(tid, 3, 7)["step"].to_pylist() == [3, 4, 5, 6]
    strip = store.check_strip(tid)
    assert strip.num_rows == all_steps.num_rows
    word = "verifier"
    expected = [s["step"] for s in steps if s["trajectory_id"] == tid and word in (s["check_detail"] or "")]
    assert set(expected) <= set(store.find_in_trajectory(tid, "reference execution") + expected)


@pytest.mark.parametrize("text", ["'; DROP TABLE steps; --", "%", "_", "\\", "%_\\", "漢字", "🚀", "<script>"])
def test_hostile_text_is_literal(hostile_corpus: Path, text: str) -> None:
    store = open_store(hostile_corpus)
    page = store.list_trajectories(TrajectoryFilter(text=text))
    assert _ids(page) == {"evil-t0"}  # only the hostile trajectory contains these characters literally
    assert store.scalar("SELECT count(*) FROM steps") == 5  # nothing was dropped


def test_hostile_filter_values(hostile_corpus: Path) -> None:
    store = open_store(hostile_corpus)
    assert _ids(store.list_trajectories(TrajectoryFilter(domains=["weird'domain"]))) == {"evil-t0"}
    assert store.list_trajectories(TrajectoryFilter(domains=["x' OR '1'='1"])).total == 0
    assert store.list_trajectories(TrajectoryFilter(text="100% done")).total == 1
    assert store.list_trajectories(TrajectoryFilter(text="100_ done")).total == 0
    assert store.trajectory("evil-t0")["task"] == HOSTILE


def test_group_and_distinct(store, raw) -> None:
    trajs, _ = raw
    groups = store.by_group("agent").to_pylist()
    assert sum(g["trajectories"] for g in groups) == len(trajs)
    assert store.distinct("domain") == sorted({t["domain"] for t in trajs})
    with pytest.raises(StoreError):
        store.by_group("task; select 1")


def test_docs_list_every_view_with_its_columns() -> None:
    """docs/corpus-format.md ("Querying") lists what `views()` answers for the bundled corpus, column by column.

    `python -m tests.support.docs_views` rewrites the table.
    """
    from tests.support.docs_views import DOC, views_table

    table = views_table()
    assert table in DOC.read_text().split("## Querying")[1]
    assert all(f"`{view}`" in table for view in ("routing_steps", "rollout_compare", "annotations", "agg_tools"))
