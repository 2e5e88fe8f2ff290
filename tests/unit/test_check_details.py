"""Failed checks say what was expected and what was given, as far as each source knows a reference."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from horizonlens.ingest import import_paths
from tests.support.corpora import SHARED_DATASETS, TAU


def _import(tmp_path: Path, name: str, value: object, jsonl: bool = False) -> tuple[list[dict], list[dict]]:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(v) for v in value) + "\n" if jsonl else json.dumps(value))  # type: ignore
    report = import_paths([path], tmp_path / "c")
    assert not report.problems, report.problems
    return [pq.read_table(tmp_path / "c" / table).to_pylist() for table in ("trajectories", "steps")]  # type: ignore


def _failed(steps: list[dict]) -> list[str]:
    return [s["check_detail"] for s in steps if s["check_passed"] is False]


def test_tau_bench_error_names_the_call_and_the_expected_action(tmp_path: Path) -> None:
    run = copy.deepcopy(TAU)
    run["info"]["reward_info"] = {"reward": 0.0, "info": {"r_actions": 0.0},
                                  "actions": [{"name": "get_user", "kwargs": {"id": 2}}]}
    trajs, steps = _import(tmp_path, "tau.json", [run])
    (detail,) = _failed(steps)
    assert detail == ('Error: user not found — given get_user({"id": 1}) — the task expects get_user with '
                      "id: expected 2, given 1")
    assert json.loads(trajs[0]["metadata"])["reward_info"]["actions"][0]["name"] == "get_user"


def test_tau_bench_error_on_the_expected_call_itself(tmp_path: Path) -> None:
    run = copy.deepcopy(TAU)
    run["info"]["reward_info"] = {"actions": [{"name": "get_user", "kwargs": {"id": 1}}]}
    _, steps = _import(tmp_path, "tau.json", [run])
    assert _failed(steps) == ['Error: user not found — given get_user({"id": 1}) — the task expects get_user '
                              "with the same arguments"]


def test_chat_error_without_a_reference_names_the_call(tmp_path: Path) -> None:
    _, steps = _import(tmp_path, "plain.json", TAU["traj"])
    assert _failed(steps) == ['Error: user not found — given get_user({"id": 1})']


def test_exit_codes_are_set_beside_the_expected_zero(tmp_path: Path) -> None:
    mini = {"trajectory_format": "mini-swe-agent-1", "info": {"exit_status": "Submitted"},
            "messages": [{"role": "user", "content": "task"},
                         {"role": "assistant", "content": "THOUGHT: bad\n```bash\npytest -x\n```"},
                         {"role": "user", "content": "<returncode>2</returncode><output>E</output>"}]}
    _, steps = _import(tmp_path / "mini", "m.traj.json", mini)
    assert _failed(steps) == ['return code: expected 0, given 2 — command "pytest -x"']

    hands = {"instance_id": "r__1", "instruction": "fix",
             "test_result": {"report": {"resolved": False, "tests_status": {
                 "FAIL_TO_PASS": {"success": [], "failure": ["test_a"]},
                 "PASS_TO_PASS": {"success": ["test_b"], "failure": []}}}},
             "history": [{"id": 1, "source": "agent", "action": "run", "args": {"command": "make test"}},
                         {"id": 2, "source": "agent", "observation": "run", "cause": 1, "content": "",
                          "extras": {"exit_code": 2}}]}
    trajs, steps = _import(tmp_path / "hands", "output.jsonl", [hands], jsonl=True)
    assert _failed(steps) == ['exit code: expected 0, given 2 — command "make test"']
    assert json.loads(trajs[0]["metadata"])["tests_status"]["FAIL_TO_PASS"]["failure"] == ["test_a"]

    log = {"is_correct": "False", "question": "q?", "mistake_step": "0", "mistake_agent": "A",
           "history": [{"content": "exitcode: 1 (execution failed)\nTraceback\nNameError: name 'x' is not defined",
                        "role": "user", "name": "Computer_terminal"}, {"content": "ok", "role": "user", "name": "B"}]}
    _, steps = _import(tmp_path / "ww", "Algo/1.json", log)
    assert steps[1]["check_passed"] is False and steps[1]["label_source"] == "annotation"
    log["mistake_step"] = "1"
    _, steps = _import(tmp_path / "ww2", "Algo/1.json", log)
    assert _failed(steps) == ['exit code: expected 0, given 1 — output ends "NameError: name \'x\' is not defined"']


def test_swe_agent_error_quotes_the_error_and_the_command(tmp_path: Path) -> None:
    swe = {"environment": "swe_main", "info": {"exit_status": "submitted"},
           "history": [{"role": "user", "content": "fix bug"}],
           "trajectory": [{"thought": "run", "action": "python a.py",
                           "observation": "Traceback (most recent call last):\n  File x\nValueError: bad\n"},
                          {"thought": "x", "action": "foo", "observation": "bash: foo: command not found"}]}
    _, steps = _import(tmp_path, "x.traj", swe)
    assert _failed(steps) == ['observation reports an error: "ValueError: bad" — command "python a.py"',
                              'observation reports an error: "bash: foo: command not found" — command "foo"']


def test_real_tau_bench_failed_checks_carry_the_reference(tmp_path: Path) -> None:
    src = SHARED_DATASETS / "tau-bench" / "gpt-4o-airline.json"
    if not src.exists():
        pytest.skip("no shared datasets")
    import_paths([src], tmp_path / "c")
    details = _failed(pq.read_table(tmp_path / "c" / "steps").to_pylist())
    assert details and all(" — given " in d for d in details)
    assert sum("the task expects" in d for d in details) >= 20
