"""Run tags and ids that never collide: `import --agent`, ids namespaced by agent, conflicts reported."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from horizonlens.cli import app
from horizonlens.ingest import ImportFailed, import_paths
from horizonlens.ingest.formats.openai_chat import tau_bench_id, tau_bench_task
from tests.support.corpora import SHARED_DATASETS, TAU


def _write(path: Path, value: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return path


def _trajs(corpus: Path) -> list[dict]:
    return pq.read_table(corpus / "trajectories").to_pylist()


def _other_model(record: dict) -> dict:
    """The same task and trial, run by another model: the same source id, different content."""
    traj = [*record["traj"][:-1], {"role": "assistant", "content": "Done, differently."}]
    return record | {"traj": traj, "reward": 0.0}


def test_agent_tags_runs_and_namespaces_their_ids(tmp_path: Path) -> None:
    f = _write(tmp_path / "tau.json", [TAU])
    g = _write(tmp_path / "other.json", [_other_model(TAU)])
    assert import_paths([f], tmp_path / "c", agent="gpt-4o").added == 1
    assert import_paths([g], tmp_path / "c", agent="claude").added == 1
    runs = {t["trajectory_id"]: t for t in _trajs(tmp_path / "c")}
    assert set(runs) == {"tau-bench@gpt-4o:7:2", "tau-bench@claude:7:2"}
    assert {t["agent"] for t in runs.values()} == {"gpt-4o", "claude"}
    assert {t["task_id"] for t in runs.values()} == {"tau-bench:7"}  # the task both models ran: what diff pairs on
    assert {t["outcome"] for t in runs.values()} == {"success", "failure"}
    # the id scheme has one home per format, for the label readers too
    assert tau_bench_id(7, 2, "gpt-4o") in runs and tau_bench_id(7, 2) == "tau-bench:7:2"
    assert tau_bench_task(7) == "tau-bench:7"


def test_same_content_is_already_present_different_content_is_a_conflict(tmp_path: Path) -> None:
    f = _write(tmp_path / "tau.json", [TAU, TAU | {"task_id": 8}])
    g = _write(tmp_path / "other.json", [_other_model(TAU), TAU | {"task_id": 8}, TAU | {"task_id": 9}])
    import_paths([f], tmp_path / "c")
    before = {t["trajectory_id"]: t for t in _trajs(tmp_path / "c")}
    again = import_paths([f], tmp_path / "c")
    assert (again.added, again.skipped_existing, again.conflicts) == (0, 2, [])
    report = import_paths([g], tmp_path / "c")
    assert report.added == 1 and report.skipped_existing == 1  # task 9 is new, task 8 identical
    assert len(report.conflicts) == 1
    conflict = report.conflicts[0]
    assert "'tau-bench:7:2'" in conflict.reason and "different content" in conflict.reason
    assert conflict.file.endswith("other.json") and conflict.where == "record 0"
    assert "1 conflicting" in report.summary() and "--agent" in report.summary()
    after = {t["trajectory_id"]: t for t in _trajs(tmp_path / "c")}
    assert after["tau-bench:7:2"] == before["tau-bench:7:2"]  # the corpus keeps its own run
    replaced = import_paths([g], tmp_path / "c", replace=True)
    assert replaced.replaced == 3 and not replaced.conflicts
    assert {t["trajectory_id"]: t["outcome"] for t in _trajs(tmp_path / "c")}["tau-bench:7:2"] == "failure"


def test_a_record_that_names_its_model_keeps_it(tmp_path: Path) -> None:
    chat = {"id": "q1", "model": "own-model", "messages": [{"role": "user", "content": "hi"}]}
    openhands = {"instance_id": "repo__1", "metadata": {"agent_class": "CodeActAgent",
                                                         "llm_config": {"model": "claude-x"}},
                 "history": [{"id": 0, "source": "user", "action": "message", "args": {"content": "fix"}}]}
    report = import_paths([_write(tmp_path / "chat.json", chat), _write(tmp_path / "output.json", openhands),
                           _write(tmp_path / "tau.json", [TAU])], tmp_path / "c", agent="given")
    assert report.added == 3, report.problems
    agents = {t["trajectory_id"]: t["agent"] for t in _trajs(tmp_path / "c")}
    assert agents == {"chat@own-model:q1": "own-model", "openhands@claude-x:repo__1": "claude-x",
                      "tau-bench@given:7:2": "given"}


def test_inspect_and_atif_models_and_tasks(tmp_path: Path) -> None:
    sample = {"id": "s1", "epoch": 1, "input": "hello", "messages": [{"role": "user", "content": "hello"}],
              "scores": {"match": {"value": "C"}}}
    _write(tmp_path / "a.json", {"eval": {"run_id": "r1", "task": "t", "model": "m1"}, "samples": [sample]})
    _write(tmp_path / "b.json", {"eval": {"run_id": "r2", "task": "t", "model": "m2"}, "samples": [sample]})
    atif = {"schema_version": "ATIF-v1.2", "session_id": "s-1", "agent": {"name": "terminus", "model_name": "m3"},
            "steps": [{"step_id": 1, "source": "user", "message": "do it"}]}
    _write(tmp_path / "trial" / "agent" / "trajectory.json", atif)
    _write(tmp_path / "trial" / "agent" / "result.json", {"task_name": "hello-world", "reward": 1.0})
    report = import_paths([tmp_path / "a.json", tmp_path / "b.json", tmp_path / "trial"], tmp_path / "c")
    assert report.added == 3, report.problems
    runs = {t["trajectory_id"]: (t["agent"], t["task_id"]) for t in _trajs(tmp_path / "c")}
    assert runs == {"inspect@m1:r1:s1:1": ("m1", "inspect:t:s1"), "inspect@m2:r2:s1:1": ("m2", "inspect:t:s1"),
                    "atif@m3:s-1": ("m3", "atif:hello-world")}


def test_agent_name_is_checked(tmp_path: Path) -> None:
    f = _write(tmp_path / "tau.json", [TAU])
    with pytest.raises(ImportFailed, match="--agent"):
        import_paths([f], tmp_path / "c", agent="a" * 500)
    with pytest.raises(ImportFailed, match="--agent"):
        import_paths([f], tmp_path / "c", agent="two\nlines")
    assert import_paths([f], tmp_path / "c", agent="  padded ").added == 1
    assert _trajs(tmp_path / "c")[0]["trajectory_id"] == "tau-bench@padded:7:2"


def test_cli_agent_and_conflict_report(tmp_path: Path) -> None:
    f = _write(tmp_path / "tau.json", [TAU])
    g = _write(tmp_path / "other.json", [_other_model(TAU)])
    corpus = str(tmp_path / "c")
    runner = CliRunner()
    assert runner.invoke(app, ["import", str(f), "--into", corpus]).exit_code == 0
    clash = runner.invoke(app, ["import", str(g), "--into", corpus])
    assert clash.exit_code == 0, clash.output
    assert "conflict:" in clash.output and "tau-bench:7:2" in clash.output and "0 trajectories added" in clash.output
    tagged = runner.invoke(app, ["import", str(g), "--into", corpus, "--agent", "claude"])
    assert tagged.exit_code == 0 and "1 trajectories added" in tagged.output
    assert {t["agent"] for t in _trajs(tmp_path / "c")} == {None, "claude"}


def test_two_models_of_real_tau_bench_coexist(tmp_path: Path) -> None:
    src = SHARED_DATASETS / "tau-bench" / "gpt-4o-airline.json"
    if not src.exists():
        pytest.skip(f"{src} not present")
    raw = json.loads(src.read_text())
    other = _write(tmp_path / "other.json", [_other_model(r) for r in raw])
    corpus = tmp_path / "c"
    assert import_paths([src], corpus).added == 200
    clash = import_paths([other], corpus)
    assert clash.added == 0 and len(clash.conflicts) == 200 and clash.skipped_existing == 0
    assert import_paths([src], corpus).skipped_existing == 200  # the same file again: already present
    assert import_paths([other], corpus, agent="other-model").added == 200
    trajs = _trajs(corpus)
    assert len(trajs) == 400
    by_agent: dict[object, set[str]] = {}
    for t in trajs:
        by_agent.setdefault(t["agent"], set()).add(t["task_id"])
    assert by_agent[None] == by_agent["other-model"] and len(by_agent[None]) == 50  # every task, run by both
