"""ShareGPT conversations: `conversations` of `from`/`value` turns, as LLaMA-Factory, Axolotl and FastChat read them.

Tags: system; human/user; gpt/assistant/model/chatgpt; function_call (a JSON object or list of {name,
arguments}); observation/tool/function_response. A row's `system` and `tools` (a list or its JSON text)
are read too. An assistant turn that opens with <think>...</think> carries its reasoning there. A
function_call right after an assistant turn belongs to that turn (one step with text and calls), which is
how Horizon Lens writes them (export/records.py). Horizon Lens exports keep their metadata columns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from horizonlens.errors import RecordError
from horizonlens.ingest.base import Converted, Format, require
from horizonlens.ingest.formats import chat_dataset
from horizonlens.ingest.readers import Raw

USER = frozenset({"human", "user"})
ASSISTANT = frozenset({"gpt", "assistant", "model", "chatgpt", "bard", "bing"})
TOOL = frozenset({"observation", "tool", "function_response", "function", "ipython"})
THINK = re.compile(r"^\s*<think>\n?(.*?)\n?</think>(?:\n\n)?", re.S)


def detect(sample: Any) -> bool:
    """A `conversations` list whose turns have `from` and `value`."""
    turns = sample.get("conversations") if isinstance(sample, dict) else None
    return isinstance(turns, list) and bool(turns) and all(
        isinstance(t, dict) and "from" in t and "value" in t for t in turns[:3])


def _split_think(text: str) -> tuple[str | None, str]:
    m = THINK.match(text)
    return (m.group(1), text[m.end():]) if m else (None, text)


def _calls(value: str, i: int) -> list[dict[str, Any]]:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise RecordError(f"conversations[{i}]: a function_call whose value is not JSON ({str(exc)[:80]})") from None
    items = parsed if isinstance(parsed, list) else [parsed]
    calls = []
    for item in items:
        if not isinstance(item, dict) or "name" not in item:
            raise RecordError(f"conversations[{i}]: a function_call should be an object with a name")
        calls.append({"id": None, "type": "function", "function": {"name": item["name"],
                                                                    "arguments": item.get("arguments")}})
    return calls


def to_messages(turns: list[Any], system: Any = None) -> list[dict[str, Any]]:
    """ShareGPT turns as OpenAI-style messages (which `ingest.chat` turns into steps)."""
    messages: list[dict[str, Any]] = []
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RecordError(f"conversations[{i}] is not an object")
        tag, value = str(turn.get("from")).lower(), turn.get("value")
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        name = turn.get("name") if isinstance(turn.get("name"), str) else None
        if tag == "function_call":
            reasoning, rest = _split_think(text)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" not in last and reasoning is None:
                last["tool_calls"] = _calls(rest, i)
            else:
                messages.append({"role": "assistant", "content": "", "reasoning_content": reasoning,
                                 "tool_calls": _calls(rest, i)})
            continue
        if tag in ASSISTANT:
            reasoning, rest = _split_think(text)
            messages.append({"role": "assistant", "content": rest, "reasoning_content": reasoning})
            continue
        role = "system" if tag == "system" else "user" if tag in USER else "tool" if tag in TOOL else None
        if role is None:
            raise RecordError(f"conversations[{i}] comes from {str(turn.get('from'))[:40]!r}, which is no ShareGPT tag")
        message = {"role": role, "content": text}
        if name:
            message["name"] = name
        messages.append(message)
    return messages


def convert(raw: Raw) -> Iterator[Converted]:
    """One trajectory per row, through the chat-dataset reader (same ids and metadata columns)."""
    v = raw.value
    turns = require(v, "conversations", list)
    row = {k: val for k, val in v.items() if k in chat_dataset.COLUMNS}
    row["messages"] = to_messages(turns, v.get("system"))
    if not row["messages"]:
        raise RecordError("the conversation has no turns")
    for traj, steps in chat_dataset.convert(Raw(row, raw.file, raw.where, raw.cuts)):
        if not v.get("source"):
            traj["source"] = "sharegpt"
        yield traj, steps


FORMAT = Format("sharegpt", "ShareGPT conversations (from/value turns; LLaMA-Factory, Axolotl, FastChat)",
                priority=12, detect=detect, convert=convert)
