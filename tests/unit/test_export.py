"""Training exports: each format, each option, the manifest, byte-identical reruns, atomic folders, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from horizonlens.errors import ExportError, SqlError
from horizonlens.export import ExportOptions, export_runs, read_manifest
from horizonlens.export.output import STAGING_PREFIX
from horizonlens.ingest import import_paths
from horizonlens.query import TrajectoryFilter, open_store
from tests.support.corpora import HOSTILE
from tests.support.exports import EMAIL, SECRET_KEY, TOOLS, export_corpus

TEXT_FIELDS = ("source", "reasoning", "message", "knowledge")


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    return export_corpus(tmp_path / "corpus")


def _export(corpus: Path, out: Path, **options) -> tuple[list[dict], dict]:
    report = export_runs(open_store(corpus), out, ExportOptions(**options))
    manifest = read_manifest(out)
    assert manifest["counts"]["runs"] == report.runs
    if options.get("format") == "hf-parquet":
        rows = pq.read_table(out / "train.parquet").to_pylist()
    else:
        rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    return rows, manifest


def _problems(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "problems.jsonl").read_text().splitlines()]


def test_openai_rows_are_faithful(corpus: Path, tmp_path: Path) -> None:
    rows, manifest = _export(corpus, tmp_path / "out", default_redactions=False)
    by_id = {r["trajectory_id"]: r for r in rows}
    assert sorted(by_id) == ["dup-t0", "dup-t1", "env-t0", "ok-t0", "ok-t1", "zero-t0"]
    ok = by_id["ok-t0"]
    assert ok["messages"] == [
        {"role": "system", "content": "You are a helpful agent."},
        {"role": "user", "content": f"Find the refund policy. My key is {SECRET_KEY}, mail {EMAIL}"},
        {"role": "user", "name": "knowledge", "content": "Refunds take 5 days."},
        {"role": "assistant", "content": "", "reasoning_content": "I should search.",
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "search", "arguments": "{\"q\": \"refund policy\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Refund policy: 30 days."},
        {"role": "assistant", "content": "Refunds are accepted for 30 days."}]
    assert ok["tools"] == TOOLS
    assert {k: ok[k] for k in ("task_id", "agent", "teacher", "domain", "outcome", "n_steps", "n_tokens")} == {
        "task_id": "task-ok", "agent": "a", "teacher": "teach-a", "domain": "search", "outcome": "success",
        "n_steps": 4, "n_tokens": 40}
    env = by_id["env-t0"]["messages"]
    assert env[0] == {"role": "user", "content": HOSTILE}
    call_id = env[1]["tool_calls"][0]["id"]  # a call without an id gets one, and its result links to it
    assert call_id == "call_1_0" and env[2] == {"role": "tool", "tool_call_id": call_id, "content": "a.txt"}
    assert env[3:] == [{"role": "user", "name": "environment", "content": "The container restarted."},
                       {"role": "tool", "tool_call_id": None, "content": "exit code 137", "name": "environment"}]
    assert "tools" not in by_id["dup-t0"]
    assert manifest["counts"] == {"selected": 6, "runs": 6, "steps": 19, "truncated": 0, "flagged_over_max_tokens": 0,
                                  "not_counted": 0, "dropped": {}}
    assert manifest["kind"] == "horizonlens training export" and manifest["format"] == "openai-jsonl"
    assert manifest["source"]["corpus_state"] == open_store(corpus).corpus_snapshot.fingerprint
    assert manifest["files"]["train.jsonl"]["rows"] == 6


def test_sharegpt_rows(corpus: Path, tmp_path: Path) -> None:
    rows, _ = _export(corpus, tmp_path / "out", format="sharegpt")
    ok = next(r for r in rows if r["trajectory_id"] == "ok-t0")
    assert ok["system"] == "You are a helpful agent."
    assert json.loads(ok["tools"]) == TOOLS
    assert [t["from"] for t in ok["conversations"]] == ["human", "human", "function_call", "observation", "gpt"]
    assert ok["conversations"][1] == {"from": "human", "value": "Refunds take 5 days.", "name": "knowledge"}
    call = ok["conversations"][2]["value"]
    assert call.startswith("<think>\nI should search.\n</think>\n\n")
    assert json.loads(call.split("</think>\n\n", 1)[1]) == [{"name": "search", "arguments": {"q": "refund policy"}}]


def test_hf_parquet_reads_with_datasets(corpus: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "out"
    rows, _ = _export(corpus, out, format="hf-parquet")
    loaded = datasets.load_dataset("parquet", data_files=str(out / "train.parquet"), split="train",
                                   cache_dir=str(tmp_path / "hf-cache"))
    assert loaded.num_rows == 6
    ok = next(r for r in loaded if r["trajectory_id"] == "ok-t0")
    assert json.loads(ok["tools"]) == TOOLS
    assert ok["messages"][3]["tool_calls"][0]["function"] == {"name": "search",
                                                              "arguments": "{\"q\": \"refund policy\"}"}
    assert ok["messages"][4]["tool_call_id"] == "c1"
    assert ok["messages"][3]["reasoning_content"] == "I should search."
    jsonl = tmp_path / "jsonl"
    _export(corpus, jsonl)
    assert datasets.load_dataset("json", data_files=str(jsonl / "train.jsonl"), split="train",
                                 cache_dir=str(tmp_path / "hf-cache")).num_rows == 6


@pytest.mark.parametrize(("truncate_at", "kept", "cut"), [
    ("first-failed-check", {"ok-t1": 2}, {"ok-t1": 2}),
    ("decisive", {"ok-t1": 3, "zero-t0": 1}, {"ok-t1": 3}),
])
def test_truncation_keeps_the_prefix(corpus: Path, tmp_path: Path, truncate_at: str, kept: dict, cut: dict) -> None:
    rows, manifest = _export(corpus, tmp_path / "out", truncate_at=truncate_at)
    by_id = {r["trajectory_id"]: r for r in rows}
    for tid, n in kept.items():
        assert by_id[tid]["n_steps"] == n
        assert by_id[tid]["truncated_at"] == cut.get(tid)
    assert manifest["counts"]["truncated"] == len(cut)
    if truncate_at == "first-failed-check":
        assert by_id["ok-t1"]["messages"][-1] == {"role": "user", "content": "Find the refund policy."}
        assert "zero-t0" not in by_id  # it fails at step 0: nothing is left
        assert manifest["counts"]["dropped"] == {"nothing before the cut": 1}
        assert _problems(tmp_path / "out") == [{"trajectory_id": "zero-t0", "action": "dropped",
                                                "reason": "nothing before the cut",
                                                "detail": "--truncate-at first-failed-check cuts before step 0"}]


def test_selection_options(corpus: Path, tmp_path: Path) -> None:
    def ids(name: str, **options) -> list[str]:
        return [r["trajectory_id"] for r in _export(corpus, tmp_path / name, **options)[0]]

    assert ids("success", only_success=True) == ["dup-t0", "dup-t1", "ok-t0"]
    # the best run per task: success first, then the higher reward (dup-t1 has 1.0, dup-t0 0.5)
    assert ids("best", best_of_task=True) == ["dup-t1", "env-t0", "ok-t0", "zero-t0"]
    assert ids("dedupe", dedupe=True) == ["dup-t0", "env-t0", "ok-t0", "ok-t1", "zero-t0"]
    assert _problems(tmp_path / "dedupe")[0]["detail"] == "the same conversation as dup-t0"
    assert ids("where", where="outcome = 'failure' AND n_steps > 1") == ["ok-t1"]
    assert ids("filter", filter=TrajectoryFilter(domains=["coding"])) == ["env-t0"]
    assert ids("both", filter=TrajectoryFilter(outcomes=["success"]), where="task_id = 'task-dup'") == ["dup-t0",
                                                                                                        "dup-t1"]


@pytest.mark.parametrize("predicate", ["1=1; DROP TABLE steps", "1=1) OR (1=1", "n_steps > 1 -- and more",
                                       "(n_steps > 1", "no_such_column = 1", "1=1) UNION SELECT 'x' WHERE (1=1"])
def test_where_goes_through_the_sql_gate(corpus: Path, tmp_path: Path, predicate: str) -> None:
    with pytest.raises(SqlError):
        export_runs(open_store(corpus), tmp_path / "out", ExportOptions(where=predicate))
    assert not (tmp_path / "out").exists()


def test_same_command_same_bytes(corpus: Path, tmp_path: Path) -> None:
    for fmt in ("openai-jsonl", "sharegpt", "hf-parquet"):
        options = {"format": fmt, "truncate_at": "first-failed-check", "dedupe": True}
        _export(corpus, tmp_path / f"{fmt}-a", **options)
        _export(corpus, tmp_path / f"{fmt}-b", **options)
        names = sorted(p.name for p in (tmp_path / f"{fmt}-a").iterdir())
        assert names == sorted(p.name for p in (tmp_path / f"{fmt}-b").iterdir())
        for name in names:
            assert (tmp_path / f"{fmt}-a" / name).read_bytes() == (tmp_path / f"{fmt}-b" / name).read_bytes(), name


def test_redaction(corpus: Path, tmp_path: Path) -> None:
    rows, manifest = _export(corpus, tmp_path / "out", redact=["refund"])
    text = (tmp_path / "out" / "train.jsonl").read_text()
    assert SECRET_KEY not in text and EMAIL not in text and "refund" not in text
    assert "[REDACTED:api-key]" in text and "[REDACTED:email]" in text and "[REDACTED:pattern-1]" in text
    assert manifest["redaction"]["replaced"] == {"api-key": 1, "email": 1, "pattern-1": 4}
    _export(corpus, tmp_path / "plain", default_redactions=False)
    assert SECRET_KEY in (tmp_path / "plain" / "train.jsonl").read_text()
    with pytest.raises(ExportError, match="does not compile"):
        export_runs(open_store(corpus), tmp_path / "bad", ExportOptions(redact=["(unclosed"]))
    with pytest.raises(ExportError, match="empty string"):
        export_runs(open_store(corpus), tmp_path / "bad", ExportOptions(redact=["x*"]))


def test_bad_input(corpus: Path, tmp_path: Path) -> None:
    store = open_store(corpus)
    with pytest.raises(ExportError, match="selection is empty"):
        export_runs(store, tmp_path / "empty", ExportOptions(where="n_steps > 1000"))
    assert not (tmp_path / "empty").exists()
    with pytest.raises(ExportError, match="--checkpoint"):
        export_runs(store, tmp_path / "x", ExportOptions(max_tokens=100))
    with pytest.raises(ExportError, match="--format"):
        export_runs(store, tmp_path / "x", ExportOptions(format="csv"))
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not a previous Horizon Lens export"):
        export_runs(store, other, ExportOptions())
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    file_target = tmp_path / "a-file"
    file_target.write_text("x")
    with pytest.raises(ExportError, match="not a folder"):
        export_runs(store, file_target, ExportOptions())
    empty = tmp_path / "made-by-hand"
    empty.mkdir()
    assert export_runs(store, empty, ExportOptions()).runs == 6  # an empty folder holds nothing to lose


def test_replacing_an_export_is_all_or_nothing(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    _export(corpus, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    from horizonlens.export import records

    calls = {"n": 0}
    real = records.openai_row

    def failing(run):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError("disk full")
        return real(run)

    monkeypatch.setattr("horizonlens.export.training.openai_row", failing)
    with pytest.raises(OSError, match="disk full"):
        export_runs(open_store(corpus), out, ExportOptions(only_success=True))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the previous export, untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(STAGING_PREFIX)]  # no half-written folder left
    monkeypatch.undo()
    _export(corpus, out, only_success=True)  # a previous export is replaced whole
    assert read_manifest(out)["counts"]["runs"] == 3


@pytest.mark.parametrize("fmt", ["openai-jsonl", "sharegpt", "hf-parquet"])
def test_round_trip_through_import(tiny_corpus: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out"
    report = export_runs(open_store(tiny_corpus), out, ExportOptions(format=fmt, default_redactions=False))
    data = out / ("train.parquet" if fmt == "hf-parquet" else "train.jsonl")
    imported = import_paths([data], tmp_path / "back")
    assert imported.added == report.runs == 48 and not imported.problems
    assert set(imported.formats) == {"sharegpt" if fmt == "sharegpt" else "chat-dataset"}
    original = _steps_by_run(tiny_corpus)
    back = _steps_by_run(tmp_path / "back")
    assert back.keys() == original.keys()
    knowledge = 0
    for tid, steps in original.items():
        assert len(back[tid]) == len(steps), tid
        for a, b in zip(steps, back[tid], strict=True):
            assert _text(b, fmt, like=a) == _text(a, fmt, like=a), (tid, a["step"])
            knowledge += a["knowledge"] is not None
    assert knowledge > 0  # the round trip carried retrieved context too
    trajs = {t["trajectory_id"]: t for t in pq.read_table(tmp_path / "back" / "trajectories").to_pylist()}
    for t in pq.read_table(tiny_corpus / "trajectories").to_pylist():
        assert {k: trajs[t["trajectory_id"]][k] for k in ("task_id", "agent", "teacher", "domain", "outcome")} == \
               {k: t[k] for k in ("task_id", "agent", "teacher", "domain", "outcome")}


def test_round_trip_of_environment_steps(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export_runs(open_store(corpus), out, ExportOptions(default_redactions=False))
    import_paths([out / "train.jsonl"], tmp_path / "back")
    original, back = _steps_by_run(corpus), _steps_by_run(tmp_path / "back")
    for tid in original:
        assert [_text(b, "openai-jsonl", like=a) for a, b in zip(original[tid], back[tid], strict=True)] == \
               [_text(a, "openai-jsonl", like=a) for a in original[tid]], tid
    trajs = {t["trajectory_id"]: t for t in pq.read_table(tmp_path / "back" / "trajectories").to_pylist()}
    assert json.loads(trajs["ok-t0"]["metadata"])["tools"] == TOOLS


def _steps_by_run(corpus: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for s in sorted(pq.read_table(corpus / "steps").to_pylist(), key=lambda s: (s["trajectory_id"], s["step"])):
        out.setdefault(s["trajectory_id"], []).append(s)
    return out


def _text(step: dict, fmt: str, like: dict | None = None) -> tuple:
    """A step's text as the round trip must keep it. Call ids count where the source had them (`like`: the
    original step; an export gives an id to a call without one), and never in ShareGPT, which has none."""
    had = [c["id"] for c in (like or step)["tool_calls"] or []]
    calls = [((c["id"] if fmt != "sharegpt" and (i >= len(had) or had[i]) else None), c["name"],
              json.loads(c["arguments"])) for i, c in enumerate(step["tool_calls"] or [])]
    observations = [o["content"] for o in step["observations"] or []]
    return (*(step[k] for k in TEXT_FIELDS), calls, observations)


def test_cli(corpus: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from horizonlens.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["export", str(corpus), str(tmp_path / "out"), "--outcome", "success", "--outcome",
                                 "failure", "--min-steps", "3", "--where", "task_id <> 'task-dup'", "--truncate-at",
                                 "first-failed-check", "--format", "sharegpt", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["selected"], report["runs"], report["truncated"]) == (2, 2, 1)
    manifest = read_manifest(tmp_path / "out")
    assert manifest["selection"]["filter"] == {"outcomes": ["success", "failure"], "min_steps": 3}
    assert manifest["format"] == "sharegpt"
    refused = runner.invoke(app, ["export", str(corpus), str(tmp_path / "x"), "--where", "1; SELECT 2"])
    assert refused.exit_code == 1 and "error:" in refused.output and "';'" in refused.output
    result = runner.invoke(app, ["bundle", str(corpus), "--trajectory", "ok-t0", "--out", str(tmp_path / "b.html"),
                                 "--no-default-redactions"])
    assert result.exit_code == 0, result.output
    assert "4 steps, 0 labels, no routing (not replayed); 0 redaction(s)" in result.output
    assert SECRET_KEY in (tmp_path / "b.html").read_text()
    for args, message in ((["--trajectory", "nope"], "no trajectory with id 'nope'"),
                          (["--trajectory", "ok-t0", "--redact", "(x"], "does not compile")):
        result = runner.invoke(app, ["bundle", str(corpus), *args, "--out", str(tmp_path / "c.html")])
        assert result.exit_code == 1 and message in result.output
