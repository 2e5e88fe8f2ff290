"""Reading what trainers keep: chat-dataset rows (JSONL or Parquet, `messages` + `tools`) and ShareGPT conversations."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from horizonlens.ingest import detect, import_paths
from tests.support.exports import TOOLS

# A row in the shape of a Hugging Face tool-calling dataset (no Horizon Lens columns).
HF_ROW = {"messages": [
    {"role": "system", "content": "You can call tools."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "w1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "w1", "content": "Error: service unavailable"},
    {"role": "assistant", "content": "I could not reach the weather service."}], "tools": TOOLS}
# LLaMA-Factory's ShareGPT: system and tools beside the turns, function_call and observation tags.
SHAREGPT = {"conversations": [
    {"from": "human", "value": "What is 2+3?"},
    {"from": "function_call", "value": "{\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": 3}}"},
    {"from": "observation", "value": "5"},
    {"from": "gpt", "value": "<think>\nThe tool said 5.\n</think>\n\nIt is 5."}],
    "system": "Be brief.", "tools": json.dumps(TOOLS)}
FASTCHAT = {"id": "fc-1", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}


def _steps(corpus: Path) -> list[dict]:
    return sorted(pq.read_table(corpus / "steps").to_pylist(), key=lambda s: (s["trajectory_id"], s["step"]))


def test_detection_by_content() -> None:
    assert detect(HF_ROW).name == "chat-dataset"
    assert detect({"messages": HF_ROW["messages"]}).name == "chat-dataset"  # the bare Hugging Face shape
    assert detect({"messages": HF_ROW["messages"], "reward": 1, "question": "q"}).name == "openai-chat"  # a harness
    assert detect(SHAREGPT).name == "sharegpt" and detect(FASTCHAT).name == "sharegpt"


def test_chat_dataset_jsonl(tmp_path: Path) -> None:
    src = tmp_path / "train.jsonl"
    src.write_text(json.dumps(HF_ROW) + "\n" + json.dumps({"id": 7, **HF_ROW}) + "\n")
    report = import_paths([src], tmp_path / "c")
    assert report.added == 2 and report.formats == {"chat-dataset": 2} and not report.problems
    steps = [s for s in _steps(tmp_path / "c") if s["trajectory_id"] == "chat:7"]
    assert [s["source"] for s in steps] == ["system", "user", "agent", "agent"]
    assert steps[2]["tool_calls"] == [{"id": "w1", "name": "weather", "arguments": "{\"city\": \"Paris\"}"}]
    assert steps[2]["observations"] == [{"call_id": "w1", "content": "Error: service unavailable"}]
    assert steps[2]["check_passed"] is False  # a tool result that reports an error fails the calling step
    traj = next(t for t in pq.read_table(tmp_path / "c" / "trajectories").to_pylist() if t["trajectory_id"] == "chat:7")
    assert json.loads(traj["metadata"])["tools"] == TOOLS and traj["task"] == "Weather in Paris?"


def test_parquet_rows(tmp_path: Path) -> None:
    src = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pylist([{**HF_ROW, "tools": json.dumps(TOOLS), "id": str(i)} for i in range(150)]),
                   src, row_group_size=40)
    report = import_paths([tmp_path], tmp_path / "c")  # a folder: .parquet files are found like .jsonl ones
    assert report.added == 150 and not report.problems
    assert len(_steps(tmp_path / "c")) == 150 * 4


def test_sharegpt(tmp_path: Path) -> None:
    src = tmp_path / "sharegpt.json"
    src.write_text(json.dumps([SHAREGPT, FASTCHAT]))
    report = import_paths([src], tmp_path / "c")
    assert report.formats == {"sharegpt": 2} and not report.problems
    steps = _steps(tmp_path / "c")
    run = [s for s in steps if s["trajectory_id"] != "chat:fc-1"]
    assert [s["source"] for s in run] == ["system", "user", "agent", "agent"]
    assert run[2]["tool_calls"][0]["name"] == "add" and json.loads(run[2]["tool_calls"][0]["arguments"]) == {"a": 2,
                                                                                                            "b": 3}
    assert run[2]["observations"][0]["content"] == "5"
    assert (run[3]["reasoning"], run[3]["message"]) == ("The tool said 5.", "It is 5.")
    assert [s["message"] for s in steps if s["trajectory_id"] == "chat:fc-1"] == ["hi", "hello"]


def test_bad_files_are_reported_and_the_rest_imports(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(HF_ROW) + "\n")
    (tmp_path / "fake.parquet").write_bytes(b"PAR1 this is not parquet at all")
    real = tmp_path / "cut.parquet"
    pq.write_table(pa.Table.from_pylist([HF_ROW] * 3), real)
    real.write_bytes(real.read_bytes()[:200])  # truncated: the footer is gone
    (tmp_path / "bad.jsonl").write_text(json.dumps({"conversations": [{"from": "alien", "value": "x"}]}) + "\n" +
                                        json.dumps({"messages": HF_ROW["messages"], "tools": "{not json"}) + "\n")
    report = import_paths([tmp_path], tmp_path / "c")
    assert report.added == 1
    reasons = " | ".join(str(p) for p in report.problems)
    assert "fake.parquet: file: not a readable Parquet file" in reasons
    assert "cut.parquet: file: not a readable Parquet file" in reasons
    assert "no ShareGPT tag" in reasons and "'tools' is text but not JSON" in reasons
