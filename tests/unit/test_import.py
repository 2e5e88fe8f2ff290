"""Importers: one small fixture per format, the real datasets in ../shared, and hostile input."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from horizonlens.cli import app
from horizonlens.ingest import ImportFailed, import_paths
from horizonlens.query.store import open_store
from tests.support.corpora import HOSTILE, SHARED_DATASETS, TAU


def _rows(corpus: Path) -> tuple[list[dict], list[dict]]:
    return pq.read_table(corpus / "trajectories").to_pylist(), pq.read_table(corpus / "steps").to_pylist()


def _write(path: Path, value: object, jsonl: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if jsonl:
        path.write_text("\n".join(json.dumps(v) for v in value) + "\n")  # type: ignore[union-attr]
    else:
        path.write_text(json.dumps(value))
    return path


def test_openai_chat_tau_bench_and_harness(tmp_path: Path) -> None:
    harness = [{"question": "2+2?", "answer": "4", "prediction": "4", "termination": "answer", "correct": True,
                "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4",
                                                                      "reasoning": "add"}]},
               {"question": "x", "answer": "y", "messages": [{"role": "user", "content": "x"}]}]
    report = import_paths([_write(tmp_path / "tau.json", [TAU]), _write(tmp_path / "h.jsonl", harness, jsonl=True),
                           _write(tmp_path / "plain.json", TAU["traj"])], tmp_path / "c")
    assert report.added == 4 and not report.problems
    trajs, steps = _rows(tmp_path / "c")
    tau = next(t for t in trajs if t["source"] == "tau-bench")
    assert tau["trajectory_id"] == "tau-bench:7:2" and tau["trial"] == 2 and tau["outcome"] == "success"
    tau_steps = [s for s in steps if s["trajectory_id"] == tau["trajectory_id"]]
    assert [s["source"] for s in tau_steps] == ["system", "user", "agent", "agent", "agent"]
    assert [s["check_passed"] for s in tau_steps] == [None, None, False, True, None]
    assert tau_steps[2]["observations"][0]["content"] == "Error: user not found"
    assert tau_steps[3]["reasoning"] == "retry" and tau_steps[2]["label_source"] == "heuristic"
    h = [t for t in trajs if t["task"] in ("2+2?", "x")]
    assert {t["outcome"] for t in h} == {"success", "unknown"}  # no reward: never invented


def test_swe_agent_and_mini_swe_agent(tmp_path: Path) -> None:
    swe = {"environment": "swe_main", "info": {"exit_status": "submitted", "submission": "diff",
                                               "model_stats": {"instance_cost": 0.5}},
           "history": [{"role": "system", "content": "sys"}, {"role": "user", "content": "fix bug"}],
           "trajectory": [{"thought": "look", "action": "ls -a\n", "observation": "a.py", "execution_time": 0.1},
                          {"thought": "run", "action": "python a.py",
                           "observation": "Traceback (most recent call last):\n x"}]}
    mini = {"trajectory_format": "mini-swe-agent-1", "info": {"exit_status": "Submitted"},
            "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "task"},
                         {"role": "assistant", "content": "THOUGHT: list\n```bash\nls\n```"},
                         {"role": "user", "content": "<returncode>0</returncode><output>a</output>"},
                         {"role": "assistant", "content": "THOUGHT: bad\n```bash\nfalse\n```"},
                         {"role": "user", "content": "<returncode>1</returncode><output></output>"}]}
    report = import_paths([_write(tmp_path / "x.traj", swe), _write(tmp_path / "m.traj.json", mini)], tmp_path / "c")
    assert report.formats == {"swe-agent": 1, "mini-swe-agent": 1}, report.problems
    trajs, steps = _rows(tmp_path / "c")
    swe_steps = [s for s in steps if s["trajectory_id"] == "swe-agent:x"]
    assert [s["check_passed"] for s in swe_steps] == [None, None, True, False]
    assert json.loads(swe_steps[2]["tool_calls"][0]["arguments"]) == {"command": "ls -a"}
    mini_steps = [s for s in steps if s["trajectory_id"].startswith("mini-swe-agent")]
    assert [s["check_passed"] for s in mini_steps] == [None, None, True, False]
    assert {t["outcome"] for t in trajs} == {"unknown"}  # "submitted" says nothing about success


def test_atif_with_result_json(tmp_path: Path) -> None:
    atif = {"schema_version": "ATIF-v1.2", "session_id": "s-1", "agent": {"name": "terminus", "model_name": "m"},
            "steps": [{"step_id": 1, "source": "user", "message": "do it", "timestamp": "2026-01-01T00:00:00Z"},
                      {"step_id": 2, "source": "agent", "message": "ok", "reasoning_content": "think",
                       "tool_calls": [{"tool_call_id": "t1", "function_name": "bash", "arguments": {"cmd": "ls"}}],
                       "observation": {"results": [{"source_call_id": "t1", "content": "a b"}]},
                       "metrics": {"prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.01}}],
            "final_metrics": {"total_cost_usd": 0.01}}
    run = tmp_path / "run"
    _write(run / "agent" / "trajectory.json", atif)
    _write(run / "agent" / "result.json", {"verifier_result": {"rewards": {"reward": 1.0}}})
    report = import_paths([run], tmp_path / "c")
    assert report.formats == {"atif": 1}, report.problems
    trajs, steps = _rows(tmp_path / "c")
    assert trajs[0]["outcome"] == "success" and trajs[0]["agent"] == "m"
    assert steps[1]["n_tokens"] == 15 and steps[1]["check_passed"] is None  # ATIF has no checks: none invented


def test_who_and_when(tmp_path: Path) -> None:
    log = {"is_correct": "False", "question": "q?", "question_ID": "Q1", "ground_truth": "8", "mistake_agent": "A",
           "mistake_step": "1", "mistake_reason": "wrong",
           "history": [{"content": "plan", "role": "assistant", "name": "A"},
                       {"content": "exitcode: 1 (execution failed)\nboom", "role": "user", "name": "Computer_terminal"},
                       {"content": "done", "role": "user", "name": "B"}]}
    import_paths([_write(tmp_path / "Algo" / "1.json", log)], tmp_path / "c")
    trajs, steps = _rows(tmp_path / "c")
    assert trajs[0]["outcome"] == "failure"
    assert [s["is_decisive_error"] for s in steps] == [None, False, True, False]  # history[1] is step 2
    assert steps[2]["check_passed"] is False and steps[2]["label_source"] == "annotation"
    assert steps[1]["message"] == "[A] plan"


def test_inspect_eval_zip_and_json(tmp_path: Path) -> None:
    sample = {"id": "s1", "epoch": 1, "input": "hello", "target": "x",
              "messages": [{"role": "user", "content": "hello"},
                           {"role": "assistant", "content": [{"type": "reasoning", "reasoning": "hmm"},
                                                             {"type": "text", "text": "calling"}],
                            "tool_calls": [{"id": "t", "function": "search", "arguments": {"q": "a"}}]},
                           {"role": "tool", "tool_call_id": "t", "content": "oops", "error": {"message": "boom"}}],
              "scores": {"match": {"value": "C"}}}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("header.json", json.dumps({"eval": {"run_id": "r1", "task": "t", "model": "m"}}))
        zf.writestr("samples/s1_epoch_1.json", json.dumps(sample))
        zf.writestr("summaries.json", "[]")
    (tmp_path / "log.eval").write_bytes(buf.getvalue())
    _write(tmp_path / "log.json",
           {"eval": {"run_id": "r2", "task": "t"}, "samples": [sample | {"scores": {"m": {"value": 0}}}]})
    report = import_paths([tmp_path / "log.eval", tmp_path / "log.json"], tmp_path / "c")
    assert report.formats == {"inspect": 2}, report.problems
    trajs, steps = _rows(tmp_path / "c")
    assert sorted(t["outcome"] for t in trajs) == ["failure", "success"]
    agent = next(s for s in steps if s["source"] == "agent")
    assert agent["reasoning"] == "hmm" and agent["message"] == "calling" and agent["check_passed"] is False


def test_openhands(tmp_path: Path) -> None:
    rec = {"instance_id": "repo__1", "instruction": "fix", "test_result": {"report": {"resolved": True}},
           "history": [{"id": 0, "source": "user", "action": "message", "args": {"content": "fix"}},
                       {"id": 1, "source": "agent", "action": "run", "args": {"command": "ls", "thought": "see"}},
                       {"id": 2, "source": "agent", "observation": "run", "cause": 1, "content": "a",
                        "extras": {"exit_code": 0}},
                       {"id": 3, "source": "agent", "action": "run", "args": {"command": "false"}},
                       {"id": 4, "source": "agent", "observation": "run", "cause": 3, "content": "",
                        "extras": {"metadata": {"exit_code": 2}}}]}
    import_paths([_write(tmp_path / "output.jsonl", [rec], jsonl=True)], tmp_path / "c")
    trajs, steps = _rows(tmp_path / "c")
    assert trajs[0]["outcome"] == "success" and trajs[0]["trajectory_id"] == "openhands:repo__1"
    assert [s["check_passed"] for s in steps] == [None, True, False]
    assert steps[1]["reasoning"] == "see"


def test_stable_ids_replace_and_format_override(tmp_path: Path) -> None:
    f = _write(tmp_path / "tau.json", [TAU])
    assert import_paths([f], tmp_path / "c").added == 1
    again = import_paths([f], tmp_path / "c")
    assert again.added == 0 and again.skipped_existing == 1
    changed = json.loads(f.read_text())
    changed[0]["reward"] = 0.0
    f.write_text(json.dumps(changed))
    replaced = import_paths([f], tmp_path / "c", replace=True)
    assert replaced.replaced == 1
    trajs, steps = _rows(tmp_path / "c")
    assert len(trajs) == 1 and trajs[0]["outcome"] == "failure" and len(steps) == 5
    with pytest.raises(ImportFailed, match="unknown format"):
        import_paths([f], tmp_path / "c", fmt="nope")
    forced = import_paths([f], tmp_path / "d", fmt="swe-agent")
    assert forced.added == 0 and forced.problems  # forcing the wrong format reports each record


def test_bad_input_is_reported_and_the_rest_imports(tmp_path: Path) -> None:
    good = json.dumps(TAU)
    lines = [good, "{not json", json.dumps({"task_id": 1, "traj": "not a list"}), json.dumps({"hello": 1}),
             json.dumps(TAU | {"task_id": 8, "traj": [{"role": "wizard", "content": "x"}]}),
             json.dumps(TAU | {"task_id": 9, "trial": "one"})]
    src = tmp_path / "mixed.jsonl"
    src.write_text("\n".join(lines) + "\n")
    (tmp_path / "junk.json").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "trunc.json").write_text(json.dumps([TAU | {"task_id": 20}, TAU | {"task_id": 21}])[:-40])
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    report = import_paths([src, tmp_path / "junk.json", tmp_path / "trunc.json", tmp_path / "deep.json"],
                          tmp_path / "c")
    where = {(Path(p.file).name, p.where) for p in report.problems}
    assert ("mixed.jsonl", "line 2") in where and ("mixed.jsonl", "line 3") in where
    assert ("mixed.jsonl", "line 4") in where and ("mixed.jsonl", "line 5") in where
    assert ("junk.json", "file") in where
    assert any(p.file.endswith("trunc.json") and "truncated" in p.reason for p in report.problems)
    assert any(p.file.endswith("deep.json") for p in report.problems)
    assert report.added == 3  # line 1, line 6 (trial ignored when not an int) and the first truncated record
    msgs = {p.where: p.reason for p in report.problems if p.file.endswith("mixed.jsonl")}
    assert "not valid JSON" in msgs["line 2"] and "should be list" in msgs["line 3"]
    assert "unrecognised" in msgs["line 4"] and "unknown role" in msgs["line 5"]


def test_strict_imports_nothing_and_corpus_is_untouched(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    import_paths([_write(tmp_path / "a.json", [TAU])], corpus)
    # the writer lock's file notes who held it last (pid and time): it is not the corpus's data
    before = {p: p.read_bytes() for p in corpus.rglob("*") if p.is_file() and p.name != ".lock"}
    bad = tmp_path / "b.jsonl"
    bad.write_text(json.dumps(TAU | {"task_id": 99}) + "\n{oops\n")
    with pytest.raises(ImportFailed, match="strict mode"):
        import_paths([bad], corpus, strict=True)
    assert {p: p.read_bytes() for p in corpus.rglob("*") if p.is_file() and p.name != ".lock"} == before
    assert not [p for p in corpus.iterdir() if p.name.startswith(".import")]


def test_huge_message_and_hostile_text(tmp_path: Path) -> None:
    big = "A" * (10 * 2**20)
    rec = TAU | {"task_id": 5, "traj": [{"role": "user", "content": HOSTILE},
                                        {"role": "assistant", "content": big}]}
    report = import_paths([_write(tmp_path / "big.json", [rec])], tmp_path / "c")
    assert report.added == 1
    store = open_store(tmp_path / "c")
    steps = store.steps("tau-bench:5:2").to_pylist()
    assert steps[0]["message"] == HOSTILE and len(steps[1]["message"]) == len(big)


def test_streaming_jsonl_in_batches(tmp_path: Path) -> None:
    src = tmp_path / "many.jsonl"
    with src.open("w") as fh:
        for i in range(1200):
            fh.write(json.dumps(TAU | {"task_id": i}) + "\n")
    report = import_paths([src], tmp_path / "c", batch_size=250)
    assert report.added == 1200
    assert len(list((tmp_path / "c" / "trajectories").glob("*.parquet"))) == 5  # flushed in batches of 250
    assert open_store(tmp_path / "c").summary()["trajectories"] == 1200


def test_cli_import(tmp_path: Path) -> None:
    f = _write(tmp_path / "tau.json", [TAU])
    result = CliRunner().invoke(app, ["import", str(f), "--into", str(tmp_path / "c")])
    assert result.exit_code == 0 and "1 trajectories added" in result.output
    bad = CliRunner().invoke(app, ["import", str(tmp_path / "missing.json"), "--into", str(tmp_path / "c")])
    assert bad.exit_code == 1 and "no such file" in bad.output


# --- the real datasets, counted independently from the raw JSON ---------------------------------
def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def test_real_tau_bench(tmp_path: Path) -> None:
    src = _need(SHARED_DATASETS / "tau-bench" / "gpt-4o-airline.json")
    raw = json.loads(src.read_text())
    report = import_paths([src], tmp_path / "c")
    trajs, steps = _rows(tmp_path / "c")
    assert report.added == len(raw) == 200 and not report.problems
    n_steps = sum(sum(1 for m in r["traj"] if m["role"] != "tool") for r in raw)
    n_calls = sum(len(m.get("tool_calls") or []) for r in raw for m in r["traj"])
    errors = sum(1 for r in raw for m in r["traj"] if m["role"] == "tool" and m["content"].startswith("Error"))
    assert len(steps) == n_steps and report.tool_calls == n_calls
    failed_calls = sum(1 for s in steps for o in s["observations"] if (o["content"] or "").startswith("Error"))
    assert failed_calls == errors
    assert report.failed_checks <= errors
    assert report.failed_checks == sum(1 for s in steps if s["check_passed"] is False)
    assert sum(t["outcome"] == "success" for t in trajs) == sum(r["reward"] >= 1 for r in raw)
    assert {t["task_id"] for t in trajs} == {f"tau-bench:{r['task_id']}" for r in raw}


def test_real_swe_agent(tmp_path: Path) -> None:
    src = _need(SHARED_DATASETS / "swe-agent")
    files = sorted(src.glob("*.traj"))
    report = import_paths([src], tmp_path / "c")
    assert report.added == len(files) and not report.problems
    trajs, steps = _rows(tmp_path / "c")
    for f in files:
        raw = json.loads(f.read_text())
        config = raw.get("replay_config") or {}
        config = json.loads(config) if isinstance(config, str) else config
        model = config.get("agent", {}).get("model", {}).get("name")
        tid = f"swe-agent@{model}:{f.stem}" if model else f"swe-agent:{f.stem}"  # the replay config names the model
        assert next(t["agent"] for t in trajs if t["trajectory_id"] == tid) == model
        mine = [s for s in steps if s["trajectory_id"] == tid]
        if raw.get("trajectory"):
            assert sum(s["source"] == "agent" for s in mine) == len(raw["trajectory"])
        else:
            assert len(mine) == sum(1 for m in raw["history"] if m["role"] != "tool")


def test_real_who_and_when(tmp_path: Path) -> None:
    src = _need(SHARED_DATASETS / "who-and-when" / "Algorithm-Generated")
    files = sorted(src.glob("*.json"))
    report = import_paths([src], tmp_path / "c")
    assert report.added == len(files) == 60 and not report.problems
    trajs, steps = _rows(tmp_path / "c")
    assert len(steps) == sum(len(json.loads(f.read_text())["history"]) + 1 for f in files)
    decisive = {s["trajectory_id"]: s["step"] for s in steps if s["is_decisive_error"]}
    for f in files:
        raw = json.loads(f.read_text())
        assert decisive[f"who-and-when:Algorithm-Generated:{f.stem}"] == int(raw["mistake_step"]) + 1


def test_an_import_into_a_hive_partitioned_corpus_keeps_it_readable(tiny_corpus: Path, tmp_path: Path) -> None:
    from horizonlens.bench.scale import build_scaled_corpus
    from tests.support.logs import line, tau_run

    corpus = build_scaled_corpus(tiny_corpus, tmp_path / "partitioned", 50)  # files under domain=<value>/
    log = tmp_path / "runs.jsonl"
    log.write_bytes(line(tau_run(1)) + line(tau_run(2)))
    assert import_paths([log], corpus).added == 2
    store = open_store(corpus)  # a file beside the partitions would stop DuckDB reading them
    domain = store.scalar("SELECT domain FROM trajectories WHERE trajectory_id = 'tau-bench:1:0'")
    assert store.scalar("SELECT count(*) FROM trajectories") == 52
    n_steps = store.scalar("SELECT n_steps FROM trajectories WHERE trajectory_id = 'tau-bench:1:0'")
    assert n_steps and store.steps("tau-bench:1:0").num_rows == n_steps  # read through its domain partition
    new = sorted(p.relative_to(corpus).parent.as_posix() for t in ("trajectories", "steps")
                 for p in (corpus / t).rglob("hl-*.parquet"))
    assert new == [f"steps/domain={domain}", f"trajectories/domain={domain}"]
    # replacing a run rewrites its old file in its own partition folder
    log.write_bytes(line(tau_run(1, reward=0.0)))
    assert import_paths([log], corpus, replace=True).replaced == 1
    store = open_store(corpus)
    assert store.scalar("SELECT outcome FROM trajectories WHERE trajectory_id = 'tau-bench:1:0'") == "failure"
    assert store.scalar("SELECT count(*) FROM trajectories") == 52 and store.steps("tau-bench:2:0").num_rows == n_steps
    assert all(p.parent.name.startswith("domain=") for t in ("trajectories", "steps")
               for p in (corpus / t).rglob("*.parquet"))
