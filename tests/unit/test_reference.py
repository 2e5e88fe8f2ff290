"""A run against its reference: argument differences, expected actions aligned with tool calls, expected outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from horizonlens.corpus.actions import ABSENT, Difference, call_text, differences, expected_given, show_value
from horizonlens.metrics.reference import (
    EXTRA,
    MATCHED,
    MISSING,
    WRONG_ARGUMENTS,
    Call,
    ExpectedAction,
    align_actions,
    find_outputs,
    reference_of,
    tool_calls,
)
from tests.support.corpora import SHARED_DATASETS


def test_differences_name_the_path_and_both_values() -> None:
    expected = {"user_id": "u1", "payment_methods": [{"id": "cert", "amount": 250}, {"id": "card", "amount": 5}],
                "insurance": "no"}
    given = {"user_id": "u1", "payment_methods": [{"id": "cert", "amount": 250.0}, {"id": "card", "amount": 55}],
             "insurance": "no", "note": "x"}
    assert differences(expected, given) == [Difference("payment_methods[1].amount", 5, 55),
                                            Difference("note", ABSENT, "x")]
    assert differences(expected, expected) == []
    # numbers by value, but a boolean is not a number and text is exact
    assert differences({"n": 1}, {"n": 1.0}) == []
    assert differences({"n": 1}, {"n": True}) == [Difference("n", 1, True)]
    assert differences({"c": "HL401"}, {"c": "hl401"}) == [Difference("c", "HL401", "hl401")]
    # list length: the missing item is absent on one side
    assert differences([1, 2], [1]) == [Difference("[1]", 2, ABSENT)]
    assert differences("a", {"a": 1}) == [Difference("", "a", {"a": 1})]


def test_absent_survives_pickling() -> None:
    import pickle

    diff = pickle.loads(pickle.dumps(Difference("x", ABSENT, 1)))
    assert diff.expected is ABSENT


def test_difference_text() -> None:
    assert Difference("flight_id", "HL401", "HL116").text() == 'flight_id: expected "HL401", given "HL116"'
    assert Difference("x", ABSENT, 3).text() == "x: expected (absent), given 3"
    assert expected_given(0, 1) == "expected 0, given 1"
    assert show_value("y" * 200, limit=10) == '"yyyyyyyy…'
    assert call_text("search", '{"q": "flights"}') == 'search({"q": "flights"})'
    assert call_text("bash", "not json") == 'bash("not json")'


def _calls(*spec: tuple[int, str, dict, bool | None]) -> list[Call]:
    return [Call(step, name, args, ok) for step, name, args, ok in spec]


def test_alignment_hand_made_run() -> None:
    expected = [ExpectedAction("get_reservation", {"id": "A"}),
                ExpectedAction("cancel", {"id": "A", "reason": "change of plan"}),
                ExpectedAction("refund", {"id": "A"})]
    calls = _calls((2, "get_user", {"u": 1}, True), (3, "get_reservation", {"id": "B"}, True),
                   (4, "get_reservation", {"id": "A"}, True), (6, "cancel", {"id": "A", "reason": "other"}, True),
                   (8, "transfer_to_human", {}, True))
    al = align_actions(expected, calls, harmless=lambda tool: tool.startswith("get_"))
    got = [(r.status, r.name, r.at_step, r.counts) for r in al.rows]
    assert got == [(EXTRA, "get_user", 2, False), (EXTRA, "get_reservation", 3, False),
                   (MATCHED, "get_reservation", 4, False), (WRONG_ARGUMENTS, "cancel", 6, True),
                   (EXTRA, "transfer_to_human", 8, True), (MISSING, "refund", None, True)]
    wrong = al.rows[3]
    assert wrong.differences == (Difference("reason", "change of plan", "other"),)
    assert al.first_divergence is wrong
    assert al.counts() == {MATCHED: 1, WRONG_ARGUMENTS: 1, MISSING: 1, EXTRA: 3}
    table = al.table()
    assert table.loc[3, "differences"] == 'reason: expected "change of plan", given "other"'
    assert table["missing_by_end"].tolist() == [False] * 5 + [True]


def test_missing_action_is_due_before_the_next_expected_one() -> None:
    expected = [ExpectedAction("a", {}), ExpectedAction("b", {}), ExpectedAction("c", {})]
    al = align_actions(expected, _calls((1, "a", {}, True), (5, "c", {}, True)))
    missing = [r for r in al.rows if r.status == MISSING]
    assert [(r.name, r.due_step) for r in missing] == [("b", 5)]
    assert al.first_divergence is missing[0]  # due by step 5, the earliest departure


def test_exact_match_wins_over_order_and_closest_call_takes_the_rest() -> None:
    expected = [ExpectedAction("book", {"f": "X", "pay": 5}), ExpectedAction("book", {"f": "Y", "pay": 1})]
    calls = _calls((1, "book", {"f": "Y", "pay": 1}, True), (2, "book", {"f": "Z", "pay": 9}, True),
                   (3, "book", {"f": "X", "pay": 6}, True))
    al = align_actions(expected, calls)
    assert [(r.status, r.at_step, r.expected_index) for r in al.rows] == [
        (MATCHED, 1, 1), (EXTRA, 2, None), (WRONG_ARGUMENTS, 3, 0)]  # X/6 differs in one argument, Z/9 in two
    assert al.first_divergence is not None and al.first_divergence.at_step == 2


def test_arguments_the_reference_leaves_out_do_not_make_a_call_wrong() -> None:
    expected = [ExpectedAction("update", {"flights": [{"n": "HAT1"}]})]
    al = align_actions(expected, _calls((2, "update", {"flights": [{"n": "HAT1", "origin": "EWR"}]}, True)))
    (row,) = al.rows
    assert row.status == MATCHED and row.differences == (Difference("flights[0].origin", ABSENT, "EWR"),)
    assert al.first_divergence is None
    # a call that differs in a named argument is wrong, and the closest one is chosen by named arguments first
    al = align_actions(expected, _calls((1, "update", {"flights": [{"n": "HAT2"}]}, True),
                                        (3, "update", {"flights": [{"n": "HAT1", "a": 1, "b": 2}]}, True)))
    assert [(r.status, r.step) for r in al.rows] == [(EXTRA, 1), (MATCHED, 3)]


def test_a_tie_goes_to_the_call_that_took_effect() -> None:
    expected = [ExpectedAction("book", {"pay": 5})]
    al = align_actions(expected, _calls((1, "book", {"pay": 7}, False), (4, "book", {"pay": 6}, True)))
    assert [(r.status, r.step) for r in al.rows] == [(EXTRA, 1), (WRONG_ARGUMENTS, 4)]


def test_a_faithful_run_has_no_divergence() -> None:
    expected = [ExpectedAction("a", {"x": 1})]
    al = align_actions(expected, _calls((3, "a", {"x": 1}, True)))
    assert al.first_divergence is None and al.counts()[MATCHED] == 1
    assert align_actions([], []).rows == ()


def test_tool_calls_and_outputs_from_steps() -> None:
    steps = [{"step": 0, "source": "user", "message": "hi", "tool_calls": []},
             {"step": 1, "source": "agent", "message": "Your total is 1,234 dollars.", "check_passed": False,
              "tool_calls": [{"name": "calc", "arguments": '{"e": "1+2"}'}, {"name": "raw", "arguments": "text"}]}]
    assert tool_calls(steps) == [Call(1, "calc", {"e": "1+2"}, False), Call(1, "raw", "text", False)]
    found = find_outputs(["1234", "refund"], steps)
    assert [(o.text, o.step) for o in found] == [("1234", 1), ("refund", None)]


def test_reference_of_each_source() -> None:
    meta = {"reward_info": {"reward": 0.0, "info": {"r_outputs": 0.0, "outputs": {"23553": False}},
                            "actions": [{"name": "get_user_details", "kwargs": {"user_id": "u"}}]}}
    ref = reference_of("tau-bench", json.dumps(meta), 0.0, "failure")
    assert ref.actions == [ExpectedAction("get_user_details", {"user_id": "u"})]
    assert ref.outputs == ["23553"] and "r_outputs = 0" in ref.outcome_source
    assert ref.harmless("get_user_details") and not ref.harmless("cancel_reservation")
    assert ref.harmless("transfer_to_human_agents")  # the hand-over writes nothing to the database
    assert "no reward_info" in reference_of("tau-bench", "{}", 0.0).outcome_source
    assert reference_of("tau-bench", "{}", 0.0).actions is None
    generic = reference_of("horizonlens-sample", {"expected_actions": [{"name": "t", "arguments": '{"a": 1}'}]}, 0.5)
    assert generic.actions == [ExpectedAction("t", {"a": 1})] and "reward (0.5" in generic.outcome_source
    tests = reference_of("openhands", {"tests_status": {"FAIL_TO_PASS": {"success": ["t1"], "failure": ["t2"]},
                                                        "PASS_TO_PASS": {"success": ["t3"], "failure": []}}})
    assert [(t.test, t.group, t.passed) for t in tests.tests] == [
        ("t1", "FAIL_TO_PASS", True), ("t2", "FAIL_TO_PASS", False), ("t3", "PASS_TO_PASS", True)]
    assert "1 of 3" in tests.outcome_source
    assert "ground truth" in reference_of("who-and-when", {"ground_truth": "8"}).outcome_source
    assert "exit status" in reference_of("swe-agent", {"exit_status": "exit_cost"}).outcome_source
    assert reference_of(None, "not json", None, "unknown").outcome_source.endswith("(unknown)")


TAU_RUNS = SHARED_DATASETS / "tau-bench" / "gpt-4o-airline.json"


@pytest.mark.skipif(not TAU_RUNS.exists(), reason="no shared datasets")
def test_tau_bench_runs_align(tmp_path: Path) -> None:
    """On the real τ-bench runs: every rewarded run that has reward_info does exactly the expected writes."""
    from horizonlens.ingest import import_paths
    from horizonlens.query import open_store

    import_paths([TAU_RUNS], tmp_path / "c")
    store = open_store(tmp_path / "c")
    runs = store.query("SELECT trajectory_id, source, metadata, reward, outcome FROM trajectories").to_pylist()
    checked = 0
    for run in runs:
        ref = reference_of(run["source"], run["metadata"], run["reward"], run["outcome"])
        alignment = ref.align(store.steps(run["trajectory_id"]).to_pylist())
        if alignment is None:
            continue
        checked += 1
        writes = [r for r in alignment.rows if r.expected_index is not None and not ref.harmless(r.name)]
        if run["outcome"] == "success":
            # the database matched: every expected write was done with the expected arguments
            assert all(r.status == MATCHED for r in writes), run["trajectory_id"]
    assert checked >= 190
