"""Label files onto corpus steps: Who&When and AgentRx numbering checked by hand, unmatched ids, one transaction."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from horizonlens.cli import app
from horizonlens.errors import LabelError
from horizonlens.ingest import import_paths
from horizonlens.ingest.formats.openai_chat import chat_message_steps
from horizonlens.ingest.label_files import import_label_files
from horizonlens.labels import annotations as ann
from horizonlens.query import labels as label_queries
from horizonlens.query import open_store
from tests.support.corpora import HOSTILE, SHARED_DATASETS, TAU

WHO = {"is_correct": False, "question": "How many clients get the sunset awning?", "question_ID": "q-1", "level": "1",
       "ground_truth": "8", "mistake_agent": "Coder", "mistake_step": "2",
       "mistake_reason": "Counted odd addresses instead of even ones.",
       "history": [{"content": "Plan: load the sheet, count even numbers.", "role": "assistant", "name": "Planner"},
                   {"content": "exitcode: 0 (execution succeeded)\nCode output: 12", "role": "user",
                    "name": "Computer_terminal"},
                   {"content": "The answer is 12 (odd street numbers).", "role": "assistant", "name": "Coder"},
                   {"content": "TERMINATE", "role": "assistant", "name": "Planner"}]}


def _labels(corpus: Path) -> list[dict]:
    rows = label_queries.all_labels(open_store(corpus)).to_pylist()
    return sorted(rows, key=lambda r: (r["trajectory_id"], r["category"], r["step"] or -1, r["label"]))


def _steps(corpus: Path, tid: str) -> list[dict]:
    return open_store(corpus).steps(tid).to_pylist()


# --- Who&When --------------------------------------------------------------------------------------
def test_who_and_when_mistake_step_lands_on_history_index_plus_one(tmp_path: Path) -> None:
    src = tmp_path / "logs" / "Hand-Crafted" / "7.json"
    src.parent.mkdir(parents=True)
    src.write_text(json.dumps(WHO))
    corpus = tmp_path / "c"
    import_paths([src.parent], corpus)
    report = import_label_files([src.parent], corpus, "who-and-when")
    assert report.added == 1 and not report.unmatched and not report.problems
    (label,) = _labels(corpus)
    # by hand: step 0 is the question, history[0..3] are steps 1..4, so mistake_step "2" is step 3,
    # the Coder's message
    assert (label["trajectory_id"], label["step"]) == ("who-and-when:Hand-Crafted:7", 3)
    assert (label["category"], label["agent"], label["source"]) == ("decisive", "Coder", "who-and-when")
    assert label["note"] == WHO["mistake_reason"]
    step = _steps(corpus, label["trajectory_id"])[3]
    assert step["message"] == "[Coder] The answer is 12 (odd street numbers)." and step["is_decisive_error"]


def test_who_and_when_imported_from_inside_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "Algorithm-Generated"
    folder.mkdir()
    (folder / "3.json").write_text(json.dumps(WHO))
    monkeypatch.chdir(folder)
    import_paths([Path("3.json")], tmp_path / "c")  # the importer names it after the path it was given
    assert import_label_files([folder / "3.json"], tmp_path / "c", "who-and-when").added == 1
    assert _labels(tmp_path / "c")[0]["trajectory_id"] == "who-and-when::3"


def test_who_and_when_file_that_is_not_the_imported_run_is_unmatched(tmp_path: Path) -> None:
    src = tmp_path / "W" / "1.json"
    src.parent.mkdir()
    src.write_text(json.dumps(WHO))
    import_paths([src], tmp_path / "c")
    other = copy.deepcopy(WHO)
    other["history"].append({"content": "one more", "role": "assistant", "name": "Planner"})
    src.write_text(json.dumps(other))
    with pytest.raises(LabelError, match="the corpus has 5 steps"):
        import_label_files([src], tmp_path / "c", "who-and-when")
    bad = dict(WHO, mistake_step="9")
    src.write_text(json.dumps(bad))
    with pytest.raises(LabelError, match="outside the history"):
        import_label_files([src], tmp_path / "c", "who-and-when")
    assert not ann.annotations_dataset(tmp_path / "c").exists()


def test_real_who_and_when_labels_land_on_the_annotated_message(tmp_path: Path) -> None:
    src = SHARED_DATASETS / "who-and-when" / "Algorithm-Generated"
    if not src.exists():
        pytest.skip(f"{src} not present")
    corpus = tmp_path / "c"
    import_paths([src], corpus)
    report = import_label_files([src], corpus, "who-and-when")
    assert report.added == 60 and not report.unmatched and not report.problems
    store = open_store(corpus)
    for label in label_queries.all_labels(store).to_pylist():
        raw = json.loads((src / f"{label['trajectory_id'].rsplit(':', 1)[1]}.json").read_text())
        said = raw["history"][int(raw["mistake_step"])]
        step = store.steps(label["trajectory_id"], label["step"], label["step"] + 1).to_pylist()[0]
        shown = step["message"] if step["message"] is not None else step["observations"][0]["content"]
        assert shown.endswith(said["content"]) and step["is_decisive_error"]
        assert label["agent"] == raw["mistake_agent"]


# --- AgentRx ---------------------------------------------------------------------------------------
# TAU's messages: 1 system, 2 user, 3 assistant (calls c1), 4 tool (c1: "Error: user not found"),
# 5 assistant (calls c2), 6 tool (c2), 7 assistant "Done." -> steps 0 system, 1 user, 2 agent (+ tool 4),
# 3 agent (+ tool 6), 4 agent.
TAU_MESSAGE_STEPS = [0, 1, 2, 2, 3, 3, 4]


def test_message_numbers_to_steps_by_hand() -> None:
    steps = [{"step": 0, "source": "system", "observations": []}, {"step": 1, "source": "user", "observations": []},
             {"step": 2, "source": "agent", "observations": [{}]}, {"step": 3, "source": "agent", "observations": [{}]},
             {"step": 4, "source": "agent", "observations": []}]
    assert chat_message_steps(steps) == TAU_MESSAGE_STEPS
    # one call answered by an orphan tool message (unknown call id), and two calls answered in one turn
    assert chat_message_steps([{"step": 0, "source": "user", "n_observations": 0},
                               {"step": 1, "source": "environment", "n_observations": 1},
                               {"step": 2, "source": "agent", "n_observations": 2},
                               {"step": 3, "source": "agent", "n_observations": 0}]) == [0, 1, 2, 2, 2, 3]


def _agentrx(tmp_path: Path, records: list[dict]) -> Path:
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(records))
    return path


def test_agentrx_failures_and_root_cause_land_on_the_calling_step(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    import_paths([_agentrx(tmp_path, [TAU])], corpus)  # tau-bench:7:2
    gt = [{"trajectory_id": "7",
           "failures": [{"failure_id": "f1", "step_number": 4, "failure_category": "Invalid Invocation",
                         "step_reason": "looked up the wrong user id", "failed_agent": "assistant"},
                        {"failure_id": "f2", "step_number": 7, "failure_category": "Invention of New Information",
                         "step_reason": HOSTILE, "failed_agent": "assistant"}],
           "root_cause": {"failure_id": "f1"}, "failure_summary": "Never found the user."}]
    report = import_label_files([_agentrx(tmp_path, gt)], corpus, "agentrx")
    assert report.added == 3 and not report.unmatched and not report.problems
    got = [(r["category"], r["step"], r["label"]) for r in _labels(corpus)]
    # message 4 is the tool result of the call made in message 3 -> step 2; message 7 -> step 4
    assert got == [("failure", 2, "Invalid Invocation"), ("failure", 4, "Invention of New Information"),
                   ("root_cause", 2, "Invalid Invocation")]
    steps = _steps(corpus, "tau-bench:7:2")
    assert steps[2]["observations"][0]["content"] == "Error: user not found" and steps[4]["message"] == "Done."
    root = next(r for r in _labels(corpus) if r["category"] == "root_cause")
    assert root["note"] == "looked up the wrong user id\n\nSummary: Never found the user."
    assert next(r for r in _labels(corpus) if r["step"] == 4)["note"] == HOSTILE


def test_agentrx_dataset_records_without_trial(tmp_path: Path) -> None:
    """AgentRx's own tau_dataset/<n>.json records have task_id and no trial (the importer names them <id>:None)."""
    record = {k: v for k, v in TAU.items() if k != "trial"} | {"task_id": 2}
    record["traj"] = [dict(m, index=i) for i, m in enumerate(TAU["traj"], 1)]
    corpus = tmp_path / "c"
    import_paths([_agentrx(tmp_path, [record])], corpus)
    gt = [{"trajectory_id": "2", "failures": [{"failure_id": "a", "step_number": 6, "failure_category": "X"}],
           "root_cause": {"failure_id": "a"}}]
    import_label_files([_agentrx(tmp_path, gt)], corpus, "agentrx")
    assert [(r["trajectory_id"], r["step"]) for r in _labels(corpus)] == [("tau-bench:2:None", 3)] * 2


def test_unmatched_ids_are_reported_and_strict_stores_nothing(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    import_paths([_agentrx(tmp_path, [TAU])], corpus)
    gt = [{"trajectory_id": "7", "failures": [{"failure_id": "a", "step_number": 3}], "root_cause": {}},
          {"trajectory_id": "404", "failures": [{"failure_id": "a", "step_number": 1}], "root_cause": {}},
          {"trajectory_id": "7", "failures": [{"failure_id": "b", "step_number": 99}], "root_cause": {}},
          {"trajectory_id": "7", "failures": [{"step_number": 2}], "root_cause": {"failure_id": "zz"}},
          "not a record"]
    path = _agentrx(tmp_path, gt)
    runner = CliRunner()
    args = ["annotate", "import", str(path), "--into", str(corpus), "--format", "agentrx"]
    res = runner.invoke(app, [*args, "--strict"])
    assert res.exit_code == 1 and "nothing imported" in res.output
    assert not ann.annotations_dataset(corpus).exists()
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "unmatched: 404 (no trajectory with task_id tau-bench:404)" in res.output
    assert "step_number 99 is beyond the 7 messages" in res.output
    assert "failure_id 'zz', which is not among the failures" in res.output
    assert "1 labels added on 1 trajectories" in res.output
    assert [(r["step"], r["label"]) for r in _labels(corpus)] == [(2, "failure")]
    again = runner.invoke(app, args)
    assert "0 labels added" in again.output and "1 already present" in again.output


def test_a_failed_write_leaves_no_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "c"
    import_paths([_agentrx(tmp_path, [TAU])], corpus)
    gt = [{"trajectory_id": "7", "failures": [{"failure_id": str(i), "step_number": i} for i in range(1, 8)],
           "root_cause": {"failure_id": "1"}}]
    from horizonlens.storage.dataset import Transaction

    def crash(self: Transaction) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Transaction, "commit", crash)
    with pytest.raises(OSError):
        import_label_files([_agentrx(tmp_path, gt)], corpus, "agentrx")
    monkeypatch.undo()
    assert label_queries.all_labels(open_store(corpus)).num_rows == 0
    assert not list((corpus / "annotations").rglob("*.parquet"))  # the aborted file was removed
    report = import_label_files([_agentrx(tmp_path, gt)], corpus, "agentrx")
    # messages 1..7 fall on steps 0, 1, 2, 2, 3, 3, 4: two pairs of equal labels are stored once, plus the root cause
    assert (report.labels, report.added, report.already_present) == (8, 6, 2)


def test_malformed_label_files_give_clear_errors(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    import_paths([_agentrx(tmp_path, [TAU])], corpus)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LabelError, match="bad.json: not valid JSON"):
        import_label_files([bad], corpus, "agentrx")
    with pytest.raises(LabelError, match="unknown label format"):
        import_label_files([bad], corpus, "judge")
    with pytest.raises(LabelError, match="no such file"):
        import_label_files([tmp_path / "missing.json"], corpus, "agentrx")
    table = tmp_path / "t.csv"
    table.write_text("trajectory,label\nx,y\n")
    with pytest.raises(LabelError, match="needs the columns trajectory_id and label"):
        import_label_files([table], corpus, "table")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(LabelError, match="nested deeper than 100 levels"):
        import_label_files([deep], corpus, "agentrx")


def test_real_tau_bench_messages_map_to_the_steps_that_hold_them(tmp_path: Path) -> None:
    src = SHARED_DATASETS / "tau-bench" / "gpt-4o-airline.json"
    if not src.exists():
        pytest.skip(f"{src} not present")
    corpus = tmp_path / "c"
    import_paths([src], corpus)
    store = open_store(corpus)
    raw = json.loads(src.read_text())
    for record in raw:  # every message of all 200 runs: the mapped step holds that message
        tid = f"tau-bench:{record['task_id']}:{record['trial']}"
        steps = store.steps(tid).to_pylist()
        mapped = chat_message_steps(steps)
        assert len(mapped) == len(record["traj"]), tid
        for message, step_no in zip(record["traj"], mapped, strict=True):
            step = steps[step_no]
            if message["role"] == "tool":
                assert message["content"] in [o["content"] for o in step["observations"]]
            else:
                assert step["message"] == (message.get("content") or None)
                assert [c["name"] for c in step["tool_calls"]] == [c["function"]["name"] for c in
                                                                   message.get("tool_calls") or []]
    # by hand (task 0, trial 0): messages 1 s, 2 u, 3 a, 4 u, 5 a, 6 u, 7 a+8 t, 9 a+10 t, 11 a, 12 u, 13 a+14 t,
    # 15 a, 16 u, 17 a+18 t, 19 a, 20 u, 21 a+22 t -> message 22, the payment error, is on step 16
    gt = [{"trajectory_id": "0", "trial": 0,
           "failures": [{"failure_id": "f1", "step_number": 22, "failure_category": "Invalid Invocation"},
                        {"failure_id": "f2", "step_number": 23, "failure_category": "Misinterpretation"}],
           "root_cause": {"failure_id": "f1"}},
          {"trajectory_id": "0", "failures": [{"failure_id": "x", "step_number": 1}], "root_cause": {}}]
    report = import_label_files([_agentrx(tmp_path, gt)], corpus, "agentrx")
    assert report.unmatched == ["0 (4 trials in the corpus; give the record a 'trial' to pick one)"]
    got = [(r["category"], r["step"]) for r in _labels(corpus)]
    assert got == [("failure", 16), ("failure", 17), ("root_cause", 16)]
    step16 = store.steps("tau-bench:0:0", 16, 17).to_pylist()[0]
    assert step16["observations"][0]["content"].startswith("Error: payment amount does not add up")


# --- hostile label files: labels stay on their runs, one bad record costs only itself --------------------------
def _tau_corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "c"
    import_paths([_agentrx(tmp_path, [TAU])], corpus)  # tau-bench:7:2, 5 steps, 7 messages
    return corpus


def test_agentrx_step_numbers_below_one_never_land_on_the_last_steps(tmp_path: Path) -> None:
    """Message numbers count from 1: 0 or -1 as an index from the end labelled the run's last steps."""
    corpus = _tau_corpus(tmp_path)
    gt = [{"trajectory_id": "7", "failures": [{"failure_id": "a", "step_number": 2, "failure_category": "ok"}],
           "root_cause": {"step_number": 0, "failure_category": "stated alone"}},
          {"trajectory_id": "7", "failures": [{"failure_id": "b", "step_number": -1, "failure_category": "neg"}],
           "root_cause": {}},
          {"trajectory_id": "7", "failures": [{"failure_id": "c", "step_number": 7, "failure_category": "last"}],
           "root_cause": {}}]
    report = import_label_files([_agentrx(tmp_path, gt)], corpus, "agentrx")
    assert [(r["label"], r["step"]) for r in _labels(corpus)] == [("last", 4)]
    assert len(report.problems) == 2, report.problems
    assert any("root_cause.step_number 0" in p and "start at 1" in p for p in report.problems)
    assert any("step_number -1" in p for p in report.problems)


def _table(tmp_path: Path, name: str, rows: list[dict]) -> Path:
    path = tmp_path / name
    if name.endswith(".csv"):
        import csv

        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["trajectory_id", "step", "label", "note"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_one_bad_table_record_is_reported_and_the_rest_import(tmp_path: Path) -> None:
    corpus = _tau_corpus(tmp_path)
    tid = "tau-bench:7:2"
    rows = [{"trajectory_id": tid, "step": 1, "label": "good"},
            {"trajectory_id": tid, "step": -1, "label": "negative step"},
            {"trajectory_id": tid, "step": 5, "label": "one past the end"},
            {"trajectory_id": tid, "step": 999_999_999, "label": "far past"},
            {"trajectory_id": tid, "step": 2, "label": "x" * 501},
            {"trajectory_id": tid, "step": 2, "label": "long note", "note": "n" * 20_001},
            {"trajectory_id": tid, "step": "", "label": "run-level"},
            {"trajectory_id": "nope", "step": 1, "label": "unknown run"}]
    report = import_label_files([_table(tmp_path, "t.csv", rows)], corpus, "table")
    assert sorted((r["label"], r["step"]) for r in _labels(corpus)) == [("good", 1), ("run-level", None)]
    assert report.added == 2 and report.unmatched == ["nope (no such trajectory)"]
    problems = "\n".join(report.problems)
    for row, why in ((2, "step -1"), (3, "step 5 is beyond the 5 steps"), (4, "step 999999999 is beyond"),
                     (5, "at most 500"), (6, "at most 20,000")):  # data rows, counted from 1
        assert f"row {row}: " in problems and why in problems, (row, why, problems)


@pytest.mark.parametrize(("value", "field"), [(5, "label"), (float("nan"), "label"), ({"a": 1}, "note"),
                                              ([1, 2], "agent"), (True, "category"), (7, "trajectory_id"),
                                              (1.5, "step"), ("two", "step")])
def test_non_text_values_are_refused_never_stringified(tmp_path: Path, value: object, field: str) -> None:
    corpus = _tau_corpus(tmp_path)
    good = {"trajectory_id": "tau-bench:7:2", "step": 1, "label": "fine"}
    path = tmp_path / "t.jsonl"
    bad = json.dumps({**good, "label": "bad", field: value})  # NaN is written as the JSON extension NaN
    path.write_text(json.dumps(good) + "\n" + bad + "\n")
    report = import_label_files([path], corpus, "table")
    assert [r["label"] for r in _labels(corpus)] == ["fine"]
    assert len(report.problems) == 1 and "line 2" in report.problems[0] and field in report.problems[0], \
        report.problems


def test_agentrx_non_text_fields_are_refused(tmp_path: Path) -> None:
    corpus = _tau_corpus(tmp_path)
    gt = [{"trajectory_id": "7", "failures": [{"failure_id": "a", "step_number": 2, "failure_category": {"x": 1}}],
           "root_cause": {}},
          {"trajectory_id": "7", "failures": [{"failure_id": "a", "step_number": 3, "failure_category": "ok",
                                               "step_reason": float("nan")}], "root_cause": {}},
          {"trajectory_id": "7", "failures": [{"failure_id": "a", "step_number": 4, "failure_category": "kept"}],
           "root_cause": {}}]
    report = import_label_files([_agentrx(tmp_path, gt)], corpus, "agentrx")
    assert [r["label"] for r in _labels(corpus)] == ["kept"]
    assert len(report.problems) == 2 and "failure_category" in report.problems[0] and \
        "step_reason" in report.problems[1], report.problems


def test_a_label_file_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    import os

    corpus = _tau_corpus(tmp_path)
    os.mkfifo(tmp_path / "fifo.jsonl")
    with pytest.raises(LabelError, match="not a regular file"):
        import_label_files([tmp_path / "fifo.jsonl"], corpus, "table")


LABEL_STREAM_CHILD = """
import json, re, sys
from horizonlens.ingest.label_files import read_label_files
from horizonlens.query import open_store
def kb(field):
    return int(re.search(field + r':\\s+(\\d+)', open('/proc/self/status').read()).group(1))
store = open_store(sys.argv[2])
read_label_files(store, [sys.argv[3]], 'table')  # a smaller file of the same shape first: buffers are warm
base = kb('VmRSS')
labels, report = read_label_files(store, [sys.argv[1]], 'table')
print(json.dumps({'labels': len(labels), 'problems': len(report.problems), 'peak_mb': (kb('VmHWM') - base) / 1024}))
"""


def _refused_rows(path: Path, mb: int) -> Path:
    """A label table of about `mb` MB: rows whose 30,000-character notes are over the limit, and one good row."""
    row = {"trajectory_id": "tau-bench:7:2", "step": 1, "label": "refused", "note": "n" * 30_000}
    rows = [{**row, "label": "kept", "note": "fine"}] + [row] * (mb * 2**20 // 30_060)
    if path.suffix == ".csv":
        path.write_text("trajectory_id,step,label,note\n" + "".join(
            f"{r['trajectory_id']},{r['step']},{r['label']},{r['note']}\n" for r in rows))
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        path.write_text("[" + ",".join(json.dumps(r) for r in rows) + "]")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_label_files_are_streamed(tmp_path: Path, suffix: str) -> None:
    """Reading 32 MB of label rows costs what reading 8 MB does: the file is streamed, a refused row is never held."""
    import subprocess
    import sys

    corpus = _tau_corpus(tmp_path)
    warm = _refused_rows(tmp_path / f"warm{suffix}", 2)
    peaks = {}
    for mb in (8, 32):
        big = _refused_rows(tmp_path / f"big{mb}{suffix}", mb)
        out = subprocess.run([sys.executable, "-c", LABEL_STREAM_CHILD, str(big), str(corpus), str(warm)],
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got["labels"] == 1 and got["problems"] > 200, got
        peaks[mb] = got["peak_mb"]
    assert peaks[32] - peaks[8] < 12, peaks  # reading whole files: 24 MB more at the least


# --- import --replace that shrinks a run ------------------------------------------------------------------------
def test_replace_that_shrinks_a_run_removes_the_labels_past_its_end_and_says_so(tmp_path: Path) -> None:
    corpus = _tau_corpus(tmp_path)
    tid = "tau-bench:7:2"
    ann.add_labels(corpus, [ann.Label(tid, "early", step=1), ann.Label(tid, "late", step=4),
                            ann.Label(tid, "whole run")])
    shorter = dict(TAU, traj=TAU["traj"][:3])  # system, user, assistant: 3 steps
    src = tmp_path / "short.json"
    src.write_text(json.dumps([shorter]))
    result = CliRunner().invoke(app, ["import", str(src), "--into", str(corpus), "--replace"])
    assert result.exit_code == 0, result.output
    assert "1 label on steps past the new end of 1 replaced run removed" in result.output
    assert sorted(r["label"] for r in _labels(corpus)) == ["early", "whole run"]
    history = label_queries.all_labels(open_store(corpus), history=True).to_pylist()
    late = [h for h in history if h["label"] == "late"]
    assert [h["deleted"] for h in late] == [False, True]  # kept in the history, as a tombstone


def test_edits_and_additions_past_the_end_of_a_run_are_refused(tmp_path: Path) -> None:
    corpus = _tau_corpus(tmp_path)
    tid = "tau-bench:7:2"
    (a,), _ = ann.add_labels(corpus, [ann.Label(tid, "fine", step=4)])
    with pytest.raises(LabelError, match="step 999999999 is past the end of tau-bench:7:2 .5 steps"):
        ann.edit_label(corpus, a, ann.Label(tid, "moved", step=999_999_999))
    with pytest.raises(LabelError, match="step 5 is past the end"):
        ann.add_labels(corpus, [ann.Label(tid, "one too far", step=5)])
    with pytest.raises(LabelError, match="no trajectory 'nope' in this corpus"):
        ann.add_labels(corpus, [ann.Label("nope", "x", step=0)])
    assert [r["label"] for r in _labels(corpus)] == ["fine"]


def test_a_large_import_is_written_batch_by_batch_in_one_transaction(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from horizonlens.ingest import label_files

    corpus = _tau_corpus(tmp_path)
    rows = [{"trajectory_id": "tau-bench:7:2", "step": i % 5, "label": f"l{i}"} for i in range(7)]
    monkeypatch.setattr(label_files, "BATCH", 3)
    path = _table(tmp_path, "t.jsonl", rows)
    from horizonlens.storage.dataset import Transaction

    def crash(self: Transaction) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Transaction, "commit", crash)
    with pytest.raises(OSError):
        import_label_files([path], corpus, "table")
    monkeypatch.undo()
    monkeypatch.setattr(label_files, "BATCH", 3)
    assert not list((corpus / "annotations").rglob("*.parquet"))  # nothing of the batches was left behind
    report = import_label_files([path], corpus, "table")
    assert report.added == 7 and len(ann.annotations_dataset(corpus).snapshot().paths(ann.LABELS_TABLE)) == 3
    assert sorted(r["label"] for r in _labels(corpus)) == [f"l{i}" for i in range(7)]
