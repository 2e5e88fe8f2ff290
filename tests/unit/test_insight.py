"""Failure modes, tool use, routing probe and the replayed-set sample, checked against planted data and sklearn."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from horizonlens.metrics import modes as mmodes
from horizonlens.metrics import tool_use
from horizonlens.metrics.replay_set import stratified_sample
from horizonlens.metrics.routing_probe import probe_one
from horizonlens.query.store import open_store
from tests.support.corpora import make_corpus, step_row, traj_row

FAMILIES = {
    "path": ("read_file", lambda r: {"path": f"lib/mod_{r.randint(0, 999)}.py"},
             lambda r, a: f"Error: FileNotFoundError: {a['path']}"),
    "flight": ("book_reservation", lambda r: {"flight_id": f"HL{r.randint(100, 999)}", "cabin": "economy"},
               lambda r, a: f"Error: cabin 'economy' not available on {a['flight_id']}"),
    "calc": ("calc", lambda r: {"expression": f"{r.randint(1, 99)} * {r.random():.3f}"},
             lambda r, a: f"{r.random() * 1000:.4f}"),
}


def _call(cid: str, name: str, args: dict) -> dict:
    return {"id": cid, "name": name, "arguments": json.dumps(args)}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 runs, each with failed steps from one of three error families; run 0 repeats, run 1 loops."""
    r = random.Random(3)
    trajs, steps = [], []
    for i in range(60):
        family = list(FAMILIES)[i % 3]
        tool, make_args, observe = FAMILIES[family]
        tid = f"run-{i:02d}"
        rows = [step_row(tid, 0, "user", None, message="task")]
        for s in range(1, 9):
            failed = s % 3 == 0
            args = make_args(r)
            rows.append(step_row(tid, s, check=not failed, tool_calls=[_call(f"c{s}", tool if failed else "noop",
                                                                             args if failed else {"n": s})],
                                 observations=[{"call_id": f"c{s}", "content": observe(r, args) if failed else "ok"}],
                                 check_detail=f"planted {family}" if failed else None,
                                 error_label=family if failed else None))
        if i == 0:  # a repeated call: step 7's call equals step 6's
            rows[7]["tool_calls"] = rows[6]["tool_calls"]
        if i == 1:  # a loop: calls A, B, A, B on steps 1-4 (step 3 then passes its check)
            a, b = _call("x", "search", {"q": "x"}), _call("y", "open", {"id": 1})
            for s, c in ((1, a), (2, b), (3, a), (4, b)):
                rows[s]["tool_calls"] = [c]
                rows[s]["observations"] = [{"call_id": c["id"], "content": "ok"}]
            rows[3].update(check_passed=True, check_detail=None, error_label=None)
        steps += rows
        trajs.append(traj_row(tid, len(rows), task_id=f"task-{i // 4}", domain=family,
                              outcome="success" if i % 4 else "failure", agent=f"agent-{i % 2}",
                              n_failed_checks=sum(1 for x in rows if x.get("check_passed") is False)))
    return make_corpus(tmp_path_factory.mktemp("planted") / "c", trajs, steps)


def test_modes_recover_the_planted_error_families(planted: Path) -> None:
    store = open_store(planted)
    result = mmodes.compute_modes(store, config=mmodes.ModeConfig(min_cluster_size=5))
    steps = mmodes.failed_steps(store).merge(result.members, on=["trajectory_id", "step"])
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(steps["error_label"], steps["mode"]) > 0.95
    assert (result.modes["mode"] >= 0).sum() == 3
    terms = " ".join(result.modes["terms"])
    assert "filenotfounderror" in terms and "cabin" in terms and "calc" in terms


def test_modes_where_predicate_and_json(planted: Path) -> None:
    store = open_store(planted)
    result = mmodes.find_modes(store, "t.domain = 'path'", mmodes.ModeConfig(min_cluster_size=5), keep=False)
    out = result.to_json()
    members = [m for mode in out["modes"] for m in mode["members"]]
    assert len(members) == out["note"]["failed_steps"] == 20 * 2
    assert all(store.trajectory(t)["domain"] == "path" for t, _ in members)
    with pytest.raises(Exception, match="one SELECT|refused|statement|syntax|Parser"):
        mmodes.find_modes(store, "true; DROP TABLE steps", keep=False)


def test_no_failed_steps_gives_an_empty_result(planted: Path) -> None:
    result = mmodes.compute_modes(open_store(planted), "t.domain = 'nothing'")
    assert result.modes.empty and result.note["failed_steps"] == 0


def test_tool_use_counts_planted_repeats_and_loops(planted: Path) -> None:
    found = tool_use.tool_use(open_store(planted))
    runs = found["runs"].set_index("trajectory_id")
    assert runs.loc["run-00", "repeated"] == 1 and runs.loc["run-00", "loop_calls"] == 0
    assert runs.loc["run-01", "loop_calls"] == 4 and runs.loc["run-01", "repeated"] == 0
    s = found["summary"]
    assert s["repeated_calls"] == 1 and s["runs_with_repeats"] == 1 and s["runs_with_loops"] == 1
    assert s["calls"] == 60 * 8


def test_probe_equals_plain_sklearn() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 10)
    y = np.array(["a", "b", "c"])[groups % 3]
    X = rng.random((300, 16)) + (groups % 3)[:, None] * np.eye(16)[groups % 3 * 4] * 0.5
    found = probe_one(X, y, groups)
    plain = cross_val_predict(LogisticRegression(max_iter=1000), X, y, groups=groups, cv=GroupKFold(n_splits=5))
    assert found is not None and found["accuracy"] == pytest.approx((plain == y).mean())
    assert found["lower"] <= found["accuracy"] <= found["upper"] and found["n"] == 300


def test_stratified_sample_is_proportional_and_seeded() -> None:
    frame = pd.DataFrame({"trajectory_id": [f"t{i}" for i in range(100)], "domain": ["a"] * 80 + ["b"] * 20,
                          "outcome": ["success", "failure"] * 50})
    drawn = stratified_sample(frame, 10, seed=1)
    chosen = frame[frame["trajectory_id"].isin(drawn)]
    assert len(drawn) == 10 and (chosen["domain"] == "a").sum() == 8
    assert drawn == stratified_sample(frame, 10, seed=1) and drawn != stratified_sample(frame, 10, seed=2)
