"""One exported run in each format trainers read: OpenAI JSONL, ShareGPT, Hugging Face Parquet.

A run becomes chat messages through `ingest.chat.steps_to_messages` (the inverse of what the importers
do, so an export imports back to the same steps and text). Every row carries the same metadata columns
(`META_COLUMNS`). docs/export.md shows a row of each format.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from horizonlens.ingest.chat import steps_to_messages

META_COLUMNS = ("trajectory_id", "task_id", "trial", "source", "agent", "teacher", "domain", "outcome", "reward",
                "n_steps", "n_tokens", "truncated_at", "over_max_tokens")
_FUNCTION = pa.struct([pa.field("name", pa.string()), pa.field("arguments", pa.string())])
_TOOL_CALL = pa.struct([pa.field("id", pa.string()), pa.field("type", pa.string()), pa.field("function", _FUNCTION)])
MESSAGE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string()),
                     pa.field("reasoning_content", pa.string()), pa.field("name", pa.string()),
                     pa.field("tool_calls", pa.list_(_TOOL_CALL)), pa.field("tool_call_id", pa.string())])
# The Hugging Face Parquet layout. `tools` is JSON text: tool schemas differ from run to run, and one
# Parquet struct type cannot hold them all (pass `json.loads(row["tools"])` to apply_chat_template).
PARQUET_SCHEMA = pa.schema([
    pa.field("messages", pa.list_(MESSAGE)), pa.field("tools", pa.string()),
    pa.field("trajectory_id", pa.string()), pa.field("task_id", pa.string()), pa.field("trial", pa.int32()),
    pa.field("source", pa.string()), pa.field("agent", pa.string()), pa.field("teacher", pa.string()),
    pa.field("domain", pa.string()), pa.field("outcome", pa.string()), pa.field("reward", pa.float64()),
    pa.field("n_steps", pa.int32()), pa.field("n_tokens", pa.int64()), pa.field("truncated_at", pa.int32()),
    pa.field("over_max_tokens", pa.bool_())])
DATA_FILES = {"openai-jsonl": "train.jsonl", "sharegpt": "train.jsonl", "hf-parquet": "train.parquet"}
THINK = "<think>\n{}\n</think>\n\n"  # reasoning inside a ShareGPT assistant turn


@dataclass
class ExportedRun:
    """One run as it is exported: its chat messages, tool schemas (if the source had them) and metadata."""

    messages: list[dict[str, Any]]
    tools: list[Any] | None
    meta: dict[str, Any]  # the META_COLUMNS


def cut_before(steps: list[dict[str, Any]], truncate_at: str) -> int | None:
    """The step a run is cut before (`first-failed-check` or `decisive`), or None to keep it whole."""
    if truncate_at == "first-failed-check":
        return next((int(s["step"]) for s in steps if s.get("check_passed") is False), None)
    if truncate_at == "decisive":
        return next((int(s["step"]) for s in steps if s.get("is_decisive_error") is True), None)
    return None


def tools_of(metadata: str | None) -> list[Any] | None:
    """The tool schemas a run's source gave (trajectory metadata `tools`), or None."""
    if not metadata:
        return None
    try:
        tools = json.loads(metadata).get("tools")
    except (ValueError, AttributeError):
        return None
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except ValueError:
            return None
    return tools if isinstance(tools, list) and tools else None


def exported_run(traj: dict[str, Any], steps: list[dict[str, Any]], cut: int | None) -> ExportedRun:
    """A run's messages (steps before `cut` when given) and its metadata columns."""
    kept = [s for s in steps if cut is None or int(s["step"]) < cut]
    meta = {name: traj.get(name) for name in META_COLUMNS}
    meta.update(n_steps=len(kept), n_tokens=sum(int(s.get("n_tokens") or 0) for s in kept), truncated_at=cut,
                over_max_tokens=None)
    return ExportedRun(steps_to_messages(kept), tools_of(traj.get("metadata")), meta)


def fingerprint(run: ExportedRun) -> str:
    """Canonical text of what a trainer sees of a run (messages and tools): equal runs, equal text."""
    return json.dumps([run.messages, run.tools], ensure_ascii=False, sort_keys=True, separators=(",", ":"))


# --- formats -----------------------------------------------------------------------------------------
def openai_row(run: ExportedRun) -> dict[str, Any]:
    """A row of OpenAI-style chat JSONL (`messages`, `tools`, metadata)."""
    row: dict[str, Any] = {"messages": run.messages}
    if run.tools:
        row["tools"] = run.tools
    row.update(run.meta)
    return row


def _call_value(calls: list[dict[str, Any]]) -> str:
    out = []
    for call in calls:
        fn = call.get("function") or {}
        try:
            args: Any = json.loads(fn.get("arguments") or "{}")
        except ValueError:
            args = fn.get("arguments")
        out.append({"name": fn.get("name"), "arguments": args})
    return json.dumps(out, ensure_ascii=False)


def sharegpt_row(run: ExportedRun) -> dict[str, Any]:
    """A ShareGPT row as LLaMA-Factory reads it: `conversations` of `from`/`value`, `system`, `tools` (JSON text).

    Tags: human, gpt, function_call (a JSON list of {name, arguments}), observation. Reasoning opens the
    assistant's turn as <think>...</think>. Tool-call ids have no place in ShareGPT: results follow their
    calls in order.
    """
    conversations: list[dict[str, Any]] = []
    system = None
    for m in run.messages:
        role, content = m["role"], m.get("content") or ""
        if role == "system" and not conversations and system is None:
            system = content
            continue
        think = THINK.format(m["reasoning_content"]) if m.get("reasoning_content") else ""
        if role == "assistant" and m.get("tool_calls"):
            if content:
                conversations.append({"from": "gpt", "value": think + content})
                think = ""
            conversations.append({"from": "function_call", "value": think + _call_value(m["tool_calls"])})
            continue
        tag = {"system": "system", "user": "human", "assistant": "gpt", "tool": "observation"}[role]
        turn = {"from": tag, "value": think + content if role == "assistant" else content}
        if m.get("name"):
            turn["name"] = m["name"]
        conversations.append(turn)
    row: dict[str, Any] = {"conversations": conversations}
    if system is not None:
        row["system"] = system
    if run.tools:
        row["tools"] = json.dumps(run.tools, ensure_ascii=False)
    row.update(run.meta)
    return row


def jsonl_line(row: dict[str, Any]) -> bytes:
    """One JSON Lines record (UTF-8, keys in the order built, so the same run gives the same bytes)."""
    return (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")


def parquet_table(runs: Iterable[ExportedRun]) -> pa.Table:
    """Runs as rows of the Hugging Face Parquet layout (`PARQUET_SCHEMA`)."""
    rows = []
    for run in runs:
        messages = [{"role": m["role"], "content": m.get("content"), "reasoning_content": m.get("reasoning_content"),
                     "name": m.get("name"), "tool_calls": m.get("tool_calls"), "tool_call_id": m.get("tool_call_id")}
                    for m in run.messages]
        rows.append({"messages": messages, "tools": json.dumps(run.tools, ensure_ascii=False) if run.tools else None,
                     **run.meta})
    return pa.Table.from_pylist(rows, schema=PARQUET_SCHEMA)
