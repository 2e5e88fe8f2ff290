"""Corpus aggregates: built and updated file by file, and every metric from them equals a full recomputation.

The oracle is `tests/support/reference_compounding.py`: the metrics as they were computed before the aggregates (one
window pass over every checked step per query). Equality is exact (`check_exact`), on the sample corpus and on
hand-made corpora written in several commits, with facets and filters.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from horizonlens.corpus.files import corpus_dataset
from horizonlens.corpus.schema import STEPS, TRAJECTORIES
from horizonlens.derived.aggregates import SPEC, aggregates_are_fresh, build_aggregates
from horizonlens.figures.corpus import length_edges
from horizonlens.metrics import attribution, compounding
from horizonlens.query import TrajectoryFilter, open_store
from tests.support import reference_compounding as ref
from tests.support.corpora import SAMPLE_CORPUS, make_corpus, step_row, traj_row

KM_COLUMNS = ["group", "t", "at_risk", "events", "censored", "survival", "lower", "upper", "hazard"]


def _same(ours: pd.DataFrame, theirs: pd.DataFrame, columns: list[str] | None = None) -> None:
    columns = columns or list(theirs.columns)
    pd.testing.assert_frame_equal(ours[columns].reset_index(drop=True), theirs[columns].reset_index(drop=True),
                                  check_exact=True, check_dtype=False)


def assert_metrics_equal_reference(store, by: str | None, flt: TrajectoryFilter | None) -> None:
    """Every aggregate-backed metric equals the old per-query window pass, to the last digit."""
    _same(compounding.step_error_rate(store, by, flt), ref.step_error_rate(store, by, flt))
    _same(compounding.self_conditioning(store, by, flt), ref.self_conditioning(store, by, flt))
    _same(compounding.previous_step(store, by, flt), ref.previous_step(store, by, flt))
    _same(compounding.recovery(store, by, flt), ref.recovery(store, by, flt))
    km = compounding.survival(store, by, flt)
    expected = ref.kaplan_meier_per_group(store, by, flt)
    if expected.empty:
        assert km.empty
    else:
        _same(km, expected, KM_COLUMNS)


FILTERS = [None, TrajectoryFilter(domains=["search", "science"]),
           TrajectoryFilter(agents=["dense-7b-baseline"], has_failed_checks=True),
           TrajectoryFilter(min_steps=20, outcomes=["failure"]), TrajectoryFilter(tool="get_user_details"),
           TrajectoryFilter(text="insufficient", text_mode="exact")]


@pytest.fixture(scope="module")
def sample_copies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two copies of the sample corpus: one with aggregate files, one without (computed in memory)."""
    base = tmp_path_factory.mktemp("agg")
    built = Path(shutil.copytree(SAMPLE_CORPUS, base / "built"))
    bare = Path(shutil.copytree(SAMPLE_CORPUS, base / "bare", ignore=shutil.ignore_patterns("aggregates")))
    build_aggregates(built)  # up to date already when the sample ships them: then nothing is recomputed
    return built, bare


@pytest.mark.parametrize("by", [None, "domain", "agent"])
@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: "all" if f is None else ",".join(
    k for k, v in vars(f).items() if v not in (None, [], "auto")))
def test_sample_corpus_aggregates_equal_full_recomputation(sample_copies, by, flt) -> None:
    built, bare = sample_copies
    with_files, in_memory = open_store(built), open_store(bare)
    assert with_files.has_aggregates and not in_memory.has_aggregates
    assert_metrics_equal_reference(with_files, by, flt)
    assert_metrics_equal_reference(in_memory, by, flt)


@pytest.mark.parametrize("by", [None, "teacher", "source"])
def test_cube_and_per_trajectory_cells_agree(sample_copies, by) -> None:
    """A facet-only filter reads the cube; the same filter plus a no-op condition reads one row per trajectory."""
    store = open_store(sample_copies[0])
    for flt in (TrajectoryFilter(domains=["search", "general"]), TrajectoryFilter(agents=["a1-student-ckpt-2k"]),
                TrajectoryFilter(outcomes=["failure", "unknown"])):
        plain = TrajectoryFilter(**{**vars(flt), "min_steps": 0})  # n_steps >= 0 holds for every trajectory
        assert flt.facet_only() and not plain.facet_only()
        for fn in (compounding.step_error_rate, compounding.self_conditioning, compounding.previous_step,
                   compounding.recovery, compounding.survival, compounding.pass_k):
            _same(fn(store, by, flt), fn(store, by, plain))
        a, b = compounding.success_vs_length(store, by, flt), compounding.success_vs_length(store, by, plain)
        _same(a["points"], b["points"])
        _same(a["fits"], b["fits"])


def test_sample_corpus_overview_queries_equal_the_step_scans(sample_copies) -> None:
    built, _ = sample_copies
    store = open_store(built)
    for column in ("domain", "agent", "teacher", "source"):
        _same(store.by_group(column).to_pandas(), ref.by_group(store, column))
    assert store.tools() == ref.tools(store)
    preds = attribution.predictions(store)
    expected = ref.decisive_predictions(store)
    failed = set(store.query("SELECT trajectory_id FROM trajectories WHERE outcome = 'failure'").column(0).to_pylist())
    expected = expected[expected["trajectory_id"].isin(failed)]
    _same(preds, expected, ["trajectory_id", "decisive", "first_failed_check", "last_failed_check"])


def test_length_histogram_equals_numpy(sample_copies) -> None:
    store = open_store(sample_copies[0])
    lengths = store.query("SELECT outcome, n_steps, n_tokens FROM trajectories").to_pandas()
    for column in ("n_steps", "n_tokens"):
        edges = length_edges(int(lengths[column].max()))
        counts = store.length_histogram(column, edges).to_pandas()
        for outcome, part in lengths.groupby("outcome"):
            expected, _ = np.histogram(part[column].clip(lower=1), bins=edges)
            got = np.zeros(len(edges) - 1, dtype=int)
            mine = counts[counts["outcome"] == outcome]
            got[mine["bin"].to_numpy(dtype=int)] = mine["trajectories"].to_numpy()
            assert got.tolist() == expected.tolist(), (column, outcome)


# --- hand-made corpora, written in several commits -------------------------------------------------------

def _random_trajectories(rng: random.Random, prefix: str, n: int) -> tuple[list[dict], list[dict]]:
    """Trajectories with random sources, check outcomes (None/True/False), tools and decisive flags."""
    trajs, steps = [], []
    for i in range(n):
        tid = f"{prefix}{i:03d}-t{i % 3}"
        n_steps = rng.randint(0, 14)
        rows = []
        for k in range(n_steps):
            source = rng.choice(["agent", "agent", "agent", "environment", "user"])
            check = rng.choice([None, True, True, True, False]) if source != "user" else None
            tools = [{"id": f"c{k}", "name": rng.choice(["search", "book", "pay", "ls"]), "arguments": "{}"}
                     for _ in range(rng.randint(0, 2))]
            rows.append(step_row(tid, k, source, check, tool_calls=tools,
                                 is_decisive_error=rng.random() < 0.1 if check is False else None))
        failed = [r["step"] for r in rows if r["check_passed"] is False]
        trajs.append(traj_row(tid, n_steps, rng.choice(["success", "failure", "unknown"]), task_id=f"{prefix}{i // 3}",
                              domain=rng.choice(["search", "science", "code"]), agent=rng.choice(["a", "b", None]),
                              n_failed_checks=len(failed), first_failed_step=failed[0] if failed else None))
        steps.extend(rows)
    return trajs, steps


def _commit(root: Path, trajs: list[dict], steps: list[dict], drop: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """One corpus commit as an import makes it: new files, and files holding `drop` rewritten without them."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with corpus_dataset(root).transaction() as txn:
        for entry in txn.snapshot.files if drop else []:
            data = pq.read_table(root / entry.path)
            keep = data.filter(pc.invert(pc.is_in(data["trajectory_id"], value_set=pa.array(sorted(drop)))))
            if keep.num_rows < data.num_rows:
                txn.remove([entry])
                txn.write(entry.table, keep)
        txn.write("trajectories", pa.Table.from_pylist(trajs, schema=TRAJECTORIES))
        txn.write("steps", pa.Table.from_pylist(steps, schema=STEPS).sort_by([("trajectory_id", "ascending"),
                                                                               ("step", "ascending")]))
        txn.commit()


HAND_FILTERS = [None, TrajectoryFilter(domains=["science", "code"]), TrajectoryFilter(agents=["a"]),
                TrajectoryFilter(tool="pay"), TrajectoryFilter(has_failed_checks=True, min_steps=3)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_updates_equal_full_recomputation(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    trajs, steps = _random_trajectories(rng, "A", 40)
    root = make_corpus(tmp_path / "c", trajs, steps)
    first = build_aggregates(root)
    assert first.computed == {"agg_trajectories": 1, "agg_checks_by_j": 1}
    more = _random_trajectories(rng, "B", 30)
    _commit(root, *more)
    assert not aggregates_are_fresh(root)
    second = build_aggregates(root)
    assert second.computed["agg_trajectories"] == 1 and second.kept["agg_trajectories"] == 1  # only the new file
    replaced = {t["trajectory_id"] for t in trajs[:5]}
    new_trajs, new_steps = _random_trajectories(random.Random(seed + 100), "A", 5)  # same ids, new content
    _commit(root, new_trajs, new_steps, drop=replaced)
    third = build_aggregates(root)
    assert third.dropped["agg_trajectories"] == 1 and third.kept["agg_trajectories"] == 1
    assert aggregates_are_fresh(root)
    store = open_store(root)
    assert store.has_aggregates
    rows = store.scalar("SELECT count(*) FROM agg_trajectories")
    assert rows == store.scalar("SELECT count(DISTINCT trajectory_id) FROM steps")
    for by in (None, "domain", "agent"):
        for flt in HAND_FILTERS:
            assert_metrics_equal_reference(store, by, flt)
    for column in ("domain", "agent"):
        _same(store.by_group(column).to_pandas(), ref.by_group(store, column))
    assert store.tools() == ref.tools(store)


def test_a_trajectory_split_across_files_is_summarised_whole(tmp_path: Path) -> None:
    rng = random.Random(5)
    trajs, steps = _random_trajectories(rng, "S", 20)
    tid = next(t["trajectory_id"] for t in trajs if t["n_steps"] >= 8)
    mine = [s for s in steps if s["trajectory_id"] == tid]
    for s in mine:
        s["check_passed"] = s["step"] % 3 != 1  # checks in both halves, failures in both
        s["source"] = "agent"
    root = make_corpus(tmp_path / "c", [t for t in trajs if t["trajectory_id"] != tid],
                       [s for s in steps if s["trajectory_id"] != tid])
    half = len(mine) // 2
    _commit(root, [t for t in trajs if t["trajectory_id"] == tid], mine[:half])
    build_aggregates(root)
    _commit(root, [], mine[half:])  # the rest of its steps arrive in another file, summarised in another unit
    report = build_aggregates(root)
    assert set(report.rebuilt_whole) == {"agg_trajectories", "agg_checks_by_j"}
    store = open_store(root)
    assert store.scalar("SELECT count(*) FROM agg_trajectories WHERE trajectory_id = ?", [tid]) == 1
    for by in (None, "domain"):
        assert_metrics_equal_reference(store, by, None)


def test_stale_aggregates_are_bypassed_and_rebuilt(tmp_path: Path) -> None:
    trajs, steps = _random_trajectories(random.Random(9), "Z", 25)
    root = make_corpus(tmp_path / "c", trajs, steps)
    build_aggregates(root)
    store = open_store(root)
    assert store.has_aggregates
    before = compounding.step_error_rate(store)
    more = _random_trajectories(random.Random(10), "Y", 10)
    _commit(root, *more)  # the corpus moves on; the aggregates do not
    assert store.refresh() and not store.has_aggregates
    after = compounding.step_error_rate(store)  # computed from the steps, not from the stale files
    assert after["checks"].iloc[0] > before["checks"].iloc[0]
    assert_metrics_equal_reference(store, "domain", None)
    build_aggregates(root)
    assert store.refresh() and store.has_aggregates
    _same(compounding.step_error_rate(store), after)


def test_definition_change_rebuilds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trajs, steps = _random_trajectories(random.Random(3), "D", 10)
    root = make_corpus(tmp_path / "c", trajs, steps)
    build_aggregates(root)
    assert build_aggregates(root).computed["agg_trajectories"] == 0  # up to date: nothing to do
    from horizonlens.derived import spec as derived

    monkeypatch.setattr(derived.DerivedSpec, "definition", property(lambda self: "changed"))
    assert not aggregates_are_fresh(root)
    assert build_aggregates(root).computed["agg_trajectories"] == 1


def test_import_updates_the_aggregates(tmp_path: Path, tiny_corpus: Path) -> None:
    import json

    from horizonlens.ingest import import_paths

    root = Path(shutil.copytree(tiny_corpus, tmp_path / "c"))
    build_aggregates(root)
    src = tmp_path / "chat.json"
    src.write_text(json.dumps([{"role": "user", "content": "book a flight"},
                               {"role": "assistant", "content": "", "tool_calls": [
                                   {"id": "c1", "type": "function",
                                    "function": {"name": "book", "arguments": "{}"}}]},
                               {"role": "tool", "tool_call_id": "c1", "content": "Error: no seats"}]))
    import_paths([src], root)
    assert aggregates_are_fresh(root)
    store = open_store(root)
    assert store.has_aggregates
    assert_metrics_equal_reference(store, "domain", None)
    assert SPEC.dataset(root).snapshot().manifest["rows"]["agg_trajectories"] == store.summary()["trajectories"]
