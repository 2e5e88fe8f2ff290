"""Error-compounding metrics: hand-computed cases, a reference Kaplan–Meier, planted parameters, edge cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from horizonlens.metrics import attribution, compounding, timeline
from horizonlens.metrics.stats import fit_logistic, kaplan_meier, pass_hat_k, wilson
from horizonlens.query import TrajectoryFilter, open_store
from tests.support.corpora import SAMPLE_CORPUS, make_corpus, step_row, traj_row

P, F = True, False


def _traj(tid: str, checks: list[bool], outcome: str, decisive: int | None = None, **kw: object):
    steps = [step_row(tid, 0, "user", None, message="task")]
    for i, c in enumerate(checks, start=1):
        steps.append(step_row(tid, i, check=c, tool_calls=[{"id": f"c{i}", "name": "x", "arguments": "{}"}],
                              is_decisive_error=(i == decisive) if outcome == "failure" else None))
    failed = [i for i, c in enumerate(checks, start=1) if not c]
    row = traj_row(tid, len(steps), outcome, n_failed_checks=len(failed),
                   first_failed_step=failed[0] if failed else None, **kw)
    return row, steps


@pytest.fixture()
def hand(tmp_path: Path):
    parts = [_traj("A-t0", [P, F, P, P], "success", task_id="A", trial=0),
             _traj("A-t1", [F, F, P], "failure", decisive=1, task_id="A", trial=1),
             _traj("B-t0", [P, P], "success", task_id="B", trial=0, domain="science"),
             _traj("B-t1", [P, P, P, F], "failure", decisive=4, task_id="B", trial=1, domain="science")]
    root = make_corpus(tmp_path / "hand", [p[0] for p in parts], [s for p in parts for s in p[1]])
    return open_store(root)


def test_step_error_rate_and_horizon(hand) -> None:
    df = compounding.step_error_rate(hand)
    row = df.iloc[0]
    assert (row["checks"], row["failures"]) == (13, 4)
    assert row["rate"] == pytest.approx(4 / 13)
    assert row["horizon_50"] == pytest.approx(math.log(0.5) / math.log(1 - 4 / 13))
    lo, hi = wilson(4, 13)
    assert (row["lower"], row["upper"]) == pytest.approx((float(lo), float(hi)))
    by = compounding.step_error_rate(hand, "domain").set_index("group")
    assert by.loc["science", "failures"] == 1 and by.loc["search", "failures"] == 3


def test_self_conditioning_and_previous_step(hand) -> None:
    sc = compounding.self_conditioning(hand).set_index("j")
    assert sc.loc[0, ["checks", "failures"]].tolist() == [9, 3]
    assert sc.loc[1, ["checks", "failures"]].tolist() == [3, 1]
    assert sc.loc[2, ["checks", "failures"]].tolist() == [1, 0]
    assert sc.loc[1, "ratio_to_j0"] == pytest.approx((1 / 3) / (3 / 9))
    prev = compounding.previous_step(hand).set_index("previous")
    assert prev.loc["previous passed", ["checks", "failures"]].tolist() == [6, 2]
    assert prev.loc["previous failed", ["checks", "failures"]].tolist() == [3, 1]


def test_survival_hand_computed(hand) -> None:
    km = compounding.survival(hand).set_index("t")
    assert km.loc[1.0, "survival"] == pytest.approx(0.75)
    assert km.loc[2.0, "survival"] == pytest.approx(0.5)
    assert km.loc[2.0, ["at_risk", "events", "censored"]].tolist() == [3, 1, 1]
    assert km.loc[4.0, "survival"] == pytest.approx(0.0)
    assert km.loc[4.0, "hazard"] == pytest.approx(1.0)
    assert km.loc[2.0, "baseline"] == pytest.approx((1 - 4 / 13) ** 2)
    assert km.loc[2.0, "baseline_clean"] == pytest.approx((1 - 3 / 9) ** 2)  # p0 = P(fail | j=0) = 3/9


def test_pass_k_attribution_recovery_timeline(hand) -> None:
    pk = compounding.pass_k(hand).set_index("k")
    assert pk.loc[1, "pass_hat_k"] == pytest.approx(0.5) and pk.loc[2, "pass_hat_k"] == pytest.approx(0.0)
    acc = attribution.accuracy(attribution.predictions(hand)).set_index("predictor")
    assert acc.loc["first_failed_check", "exact"] == 1.0
    assert acc.loc["last_failed_check", "exact"] == 0.5 and acc.loc["last_failed_check", "within_1"] == 1.0
    rec = compounding.recovery(hand).iloc[0]
    assert rec["failed_checks"] == 4 and rec["next_check_passed"] == 2
    assert rec["runs_with_failure"] == 3 and rec["runs_with_failure_succeeded"] == 1
    tl = timeline.error_timeline(hand, "A-t1")
    assert tl["cumulative_failed"].tolist() == [0, 1, 2, 2]
    assert tl["decisive"].tolist() == [False, True, False, False]
    assert tl["recovered"].tolist() == [False, False, True, False]
    assert timeline.timeline_summary(tl)["decisive_step"] == 1


def test_failed_steps_in_order(hand) -> None:
    assert timeline.failed_steps(hand, "A-t1") == [1, 2]
    assert timeline.failed_steps(hand, "B-t1") == [4]
    assert timeline.failed_steps(hand, "B-t0") == []
    assert timeline.failed_steps(hand, "no-such-run") == []


def test_kaplan_meier_matches_lifelines() -> None:
    lifelines = pytest.importorskip("lifelines")
    rng = np.random.default_rng(3)
    durations = rng.integers(1, 40, 300)
    events = (rng.random(300) < 0.6).astype(int)
    ours = kaplan_meier(durations, events).set_index("t")
    kmf = lifelines.KaplanMeierFitter().fit(durations, events)
    ref = kmf.survival_function_["KM_estimate"]
    ci = kmf.confidence_interval_
    for t in ours.index:
        assert ours.loc[t, "survival"] == pytest.approx(ref.loc[t], abs=1e-12)
        assert ours.loc[t, "lower"] == pytest.approx(ci.loc[t].iloc[0], abs=1e-6)
        assert ours.loc[t, "upper"] == pytest.approx(ci.loc[t].iloc[1], abs=1e-6)


def test_logistic_fit_and_quantile() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 8, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(4.0 - 0.8 * x)))).astype(float)
    fit = fit_logistic(x, y)
    assert fit.intercept == pytest.approx(4.0, abs=0.35) and fit.slope == pytest.approx(-0.8, abs=0.08)
    assert fit.x_at(0.5) == pytest.approx(5.0, abs=0.3)
    assert not fit_logistic(x, np.ones_like(x)).converged


def test_pass_hat_k_unbiased_estimator() -> None:
    import pandas as pd

    df = pass_hat_k(pd.DataFrame({"n": [4, 4, 1], "c": [4, 2, 1]}))
    k = df.set_index("k")["pass_hat_k"]
    assert k[1] == pytest.approx(np.mean([1, 0.5, 1]))
    assert k[2] == pytest.approx(np.mean([1, 1 / 6]))  # the 1-trial task does not count for k=2
    assert k[4] == pytest.approx(np.mean([1, 0]))


@pytest.mark.parametrize("case", ["no_failures", "all_failures", "one_step", "single_trial"])
def test_degenerate_inputs_give_defined_results(tmp_path: Path, case: str) -> None:
    if case == "no_failures":
        parts = [_traj(f"T{i}-t0", [P] * (i + 1), "success", task_id=f"T{i}") for i in range(4)]
    elif case == "all_failures":
        parts = [_traj(f"T{i}-t0", [F] * (i + 1), "failure", decisive=1, task_id=f"T{i}") for i in range(4)]
    elif case == "one_step":
        parts = [_traj(f"T{i}-t0", [i % 2 == 0], "success" if i % 2 == 0 else "failure", decisive=1, task_id=f"T{i}")
                 for i in range(4)]
    else:
        parts = [_traj("T0-t0", [P, F], "failure", decisive=2, task_id="T0")]
    store = open_store(make_corpus(tmp_path / case, [p[0] for p in parts], [s for p in parts for s in p[1]]))
    rate = compounding.step_error_rate(store)
    assert rate["rate"].notna().all()
    km = compounding.survival(store)
    assert km["survival"].between(0, 1).all() and km["survival"].notna().all()
    assert compounding.self_conditioning(store)["rate"].notna().all()
    assert compounding.previous_step(store)["rate"].notna().all()
    fits = compounding.success_vs_length(store, n_boot=20)["fits"]
    assert len(fits) == 1  # a row even when there is nothing to fit
    if case in ("no_failures", "all_failures", "single_trial"):
        assert fits["steps_at_50"].isna().all()
    pk = compounding.pass_k(store)
    assert pk["pass_hat_k"].between(0, 1).all()
    compounding.recovery(store)
    attribution.accuracy(attribution.predictions(store))
    if case == "no_failures":
        assert rate["horizon_50"].iloc[0] is None and (km["survival"] == 1).all()


@pytest.fixture(scope="module")
def sample_store():
    corpus = SAMPLE_CORPUS
    return open_store(corpus)


def test_recovers_planted_self_conditioning(sample_store) -> None:
    planted = sample_store.manifest["planted"]
    own = planted["agent_self_conditioning"]
    # the agents at the default gamma; rate(j)/rate(0) = gamma^j for j below the cap (the agent mix shifts it a
    # little toward weaker agents)
    default = TrajectoryFilter(agents=[a for a in planted["agent_multiplier"] if a not in own])
    sc = compounding.self_conditioning(sample_store, flt=default).set_index("j")
    gamma = planted["self_conditioning"]
    assert sc.loc[1, "ratio_to_j0"] == pytest.approx(gamma, rel=0.2)
    assert sc.loc[2, "ratio_to_j0"] == pytest.approx(gamma ** 2, rel=0.25)
    assert sc.loc[1, "lower"] > sc.loc[0, "upper"]  # the intervals separate: compounding is detected
    for agent, g in own.items():  # an agent planted with its own gamma shows it
        mine = compounding.self_conditioning(sample_store, flt=TrajectoryFilter(agents=[agent])).set_index("j")
        assert mine.loc[1, "ratio_to_j0"] == pytest.approx(g, rel=0.25)
        assert mine.loc[1, "ratio_to_j0"] < sc.loc[1, "ratio_to_j0"]


def test_recovers_planted_base_rates(sample_store) -> None:
    planted = sample_store.manifest["planted"]
    for domain, base in planted["base_error_rate"].items():
        observed = expected = 0.0
        for agent, own in planted["agent_multiplier"].items():
            mult = planted["domain_multiplier"].get(agent, {}).get(domain, own)
            sc = compounding.self_conditioning(sample_store, flt=TrajectoryFilter(domains=[domain], agents=[agent]))
            j0 = sc[sc["j"] == 0]
            if j0.empty:
                continue
            observed += float(j0["failures"].iloc[0])
            expected += float(j0["checks"].iloc[0]) * base * mult
        # Poisson tolerance: three standard errors of the expected count, plus 5% for undo steps
        # (never corrupted) diluting the checks
        assert abs(observed / expected - 1) < 3 / math.sqrt(expected) + 0.05, (domain, observed, expected)


def test_metrics_cli_json(sample_store) -> None:
    from typer.testing import CliRunner

    from horizonlens.cli import app

    result = CliRunner().invoke(app, ["metrics", str(sample_store.root), "--by", "domain", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) >= {"step_error_rate", "survival", "self_conditioning", "success_vs_length", "pass_k", "recovery"}
    assert {r["group"] for r in data["step_error_rate"]} == set(sample_store.manifest["planted"]["base_error_rate"])
    table = CliRunner().invoke(app, ["metrics", str(sample_store.root)])
    assert table.exit_code == 0 and "Step error rate" in table.output
