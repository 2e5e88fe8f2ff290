"""Attribution scored against any label category: nearest-truth distance, label predictors, agent accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from horizonlens.cli import app
from horizonlens.labels.annotations import Label, add_labels
from horizonlens.metrics.attribution import LabelSet, accuracy, predictions
from horizonlens.query import open_store
from tests.support.corpora import make_corpus, step_row, traj_row


@pytest.fixture()
def labelled(tmp_path: Path) -> Path:
    """T1, T2 failed; T3 succeeded. First failed checks: T1 step 3, T2 step 4, T3 none. T2 has 10 steps, others 7."""
    lengths = {"T1-t0": 7, "T2-t0": 10, "T3-t0": 7, "T4-t0": 7}
    trajs = [traj_row(t, n, "success" if t == "T3-t0" else "failure") for t, n in lengths.items()]
    fails = {"T1-t0": 3, "T2-t0": 4}
    steps = [step_row(t, s, check=s != fails.get(t)) for t, n in lengths.items() for s in range(n)]
    corpus = make_corpus(tmp_path / "c", trajs, steps)
    add_labels(corpus, [
        Label("T1-t0", "mistake", "decisive", step=2, agent="Coder", source="gt"),
        Label("T2-t0", "mistake", "decisive", step=4, agent="Planner", source="gt"),
        Label("T3-t0", "mistake", "decisive", step=1, source="gt"),
        Label("T4-t0", "whole run", "decisive", source="gt"),  # no step: not a truth for step attribution
        Label("T1-t0", "predicted", "decisive", step=2, agent="coder", source="judge"),
        Label("T2-t0", "predicted", "decisive", step=6, agent="Coder", source="judge"),
        Label("T2-t0", "predicted later", "decisive", step=9, source="judge"),  # the earliest labelled step counts
        Label("T2-t0", "f", "failure", step=1, source="gt"), Label("T2-t0", "f", "failure", step=5, source="gt"),
    ])
    return corpus


def test_label_truth_and_label_predictor_by_hand(labelled: Path) -> None:
    store = open_store(labelled)
    preds = predictions(store, truth=LabelSet("decisive", "gt"), label_predictors=[LabelSet("decisive", "judge")])
    assert preds["trajectory_id"].tolist() == ["T1-t0", "T2-t0", "T3-t0"]  # every labelled run, success included
    acc = accuracy(preds).set_index("predictor")
    judge = acc.loc["label:decisive@judge"]
    # judge: T1 exact (2 vs 2), T2 off by 2 (6 vs 4), T3 no prediction
    assert (judge["exact"], judge["within_1"], judge["within_2"], judge["within_5"]) == pytest.approx(
        (1 / 3, 1 / 3, 2 / 3, 2 / 3))
    # truth names agents in T1 (Coder) and T2 (Planner); the judge blames coder (case ignored) and Coder
    assert judge["agent_accuracy"] == pytest.approx(1 / 2) and judge["agent_trajectories"] == 2
    first = acc.loc["first_failed_check"]  # T1: 3 vs 2, T2: 4 vs 4, T3: none
    assert (first["exact"], first["within_1"]) == pytest.approx((1 / 3, 2 / 3))
    assert "highest_surprisal" not in acc.index  # no replays: the rule has nothing to say


def test_distance_is_to_the_nearest_truth_step(labelled: Path) -> None:
    store = open_store(labelled)
    preds = predictions(store, truth=LabelSet("failure"), failed_only=True)
    assert preds["truth_steps"].map(list).tolist() == [[1, 5]]
    acc = accuracy(preds).set_index("predictor")
    # T2's first failed check is step 4: 1 from the truth step 5, 3 from step 1
    assert (acc.loc["first_failed_check", "exact"], acc.loc["first_failed_check", "within_1"]) == (0.0, 1.0)


def test_importer_truth_is_unchanged_and_failed_only(labelled: Path, tmp_path: Path) -> None:
    trajs = [traj_row("A-t0", 3, "failure"), traj_row("B-t0", 3, "success")]
    steps = [step_row("A-t0", 0), step_row("A-t0", 1, check=False, is_decisive_error=True), step_row("A-t0", 2),
             step_row("B-t0", 0), step_row("B-t0", 1, is_decisive_error=True), step_row("B-t0", 2)]
    store = open_store(make_corpus(tmp_path / "imp", trajs, steps))
    preds = predictions(store)
    assert preds["trajectory_id"].tolist() == ["A-t0"] and preds["decisive"].tolist() == [1]
    assert accuracy(preds).set_index("predictor").loc["first_failed_check", "exact"] == 1.0


def test_score_command_rebuilds_the_table(labelled: Path) -> None:
    res = CliRunner().invoke(app, ["annotate", "score", str(labelled), "--truth", "decisive@gt", "--predict",
                                   "decisive@judge", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["trajectories"] == 3
    judge = next(r for r in out["accuracy"] if r["predictor"] == "label:decisive@judge")
    assert judge["exact"] == pytest.approx(1 / 3) and judge["agent_accuracy"] == pytest.approx(0.5)
