"""Chat messages (OpenAI style) → corpus steps; the shared core of several formats.

One step per message turn: system/user messages become system/user steps; an assistant message
becomes an agent step (reasoning, message, tool calls); a tool message is attached as an
observation to the agent step that made the call. Checks are set only where the source says
something: a tool result that reports an error fails the calling step's check; a step whose
calls all returned without an error passes (`label_source = heuristic`); otherwise null.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from horizonlens.corpus.actions import call_text
from horizonlens.errors import RecordError
from horizonlens.ingest.base import new_step

ERROR_CHARS = 300  # characters of a tool's error kept in a failed check's detail
ERROR_RESULT = re.compile(r"^\s*(error\b|error:|exception\b|traceback \(most recent call last\))", re.IGNORECASE)


def text_of(content: Any) -> str | None:
    """Message content as text: strings as is, content-part lists joined (text parts only)."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                value = part.get("text") if part.get("type", "text") == "text" else None
                if value is None and part.get("type") in ("image", "image_url"):
                    value = "[image]"
                if isinstance(value, str):
                    parts.append(value)
        return "\n".join(parts)
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return content["text"]
    return json.dumps(content, ensure_ascii=False)


def reasoning_of(message: dict[str, Any]) -> str | None:
    """The reasoning a chat message carries, under whichever key or content-part type its source uses."""
    for key in ("reasoning_content", "reasoning", "thinking", "thought"):
        value = message.get(key)
        if isinstance(value, str) and value.strip():
            return value
    content = message.get("content")
    if isinstance(content, list):  # content parts of type reasoning (Inspect, Anthropic-style)
        parts = [p.get("reasoning") or p.get("thinking") for p in content
                 if isinstance(p, dict) and p.get("type") in ("reasoning", "thinking")]
        joined = "\n".join(p for p in parts if isinstance(p, str))
        return joined or None
    return None


def arguments_text(arguments: Any) -> str:
    """A tool call's arguments as the JSON text a step stores (strings are kept as given)."""
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False)


def tool_calls_of(message: dict[str, Any]) -> list[dict[str, str | None]]:
    """The tool calls of a chat message as step tool-call rows, from OpenAI or Inspect AI shapes."""
    calls = []
    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise RecordError(f"tool_calls should be a list, got {type(raw_calls).__name__}")
    for i, call in enumerate(raw_calls):
        if not isinstance(call, dict):
            raise RecordError(f"tool_calls[{i}] is not an object")
        fn = call.get("function")
        if isinstance(fn, dict):  # OpenAI: {"function": {"name", "arguments"}}
            name, args = fn.get("name"), fn.get("arguments")
        else:  # Inspect AI: {"function": "name", "arguments": {...}}
            name, args = (fn if isinstance(fn, str) else call.get("name")), call.get("arguments")
        calls.append({"id": str(call.get("id")) if call.get("id") is not None else None,
                      "name": str(name) if name is not None else None, "arguments": arguments_text(args)})
    return calls


def is_error_result(content: str | None) -> bool:
    """Does a tool result read as an error (the heuristic check of imported chat logs)?"""
    return bool(content) and bool(ERROR_RESULT.match(content or ""))


def messages_to_steps(messages: list[Any], is_error: Callable[[dict[str, Any], str | None], bool] | None = None
                      ) -> list[dict[str, Any]]:
    """Convert chat messages to steps; raises RecordError on a malformed message."""
    if not isinstance(messages, list):
        raise RecordError("messages is not a list")
    is_error = is_error or (lambda msg, text: is_error_result(text) or bool(msg.get("error")))
    steps: list[dict[str, Any]] = []
    by_call: dict[str, dict[str, Any]] = {}
    last_agent: dict[str, Any] | None = None
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise RecordError(f"message {i} is not an object")
        role = msg.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool", "function", "ipython"):
            raise RecordError(f"message {i} has unknown role {str(role)[:40]!r}")
        text = text_of(msg.get("content"))
        if role in ("system", "developer"):
            steps.append(new_step(len(steps), "system", message=text))
        elif role == "user":
            steps.append(new_step(len(steps), "user", message=text))
        elif role == "assistant":
            step = new_step(len(steps), "agent", message=text or None, reasoning=reasoning_of(msg),
                            tool_calls=tool_calls_of(msg))
            steps.append(step)
            last_agent = step
            for call in step["tool_calls"]:
                if call["id"]:
                    by_call[call["id"]] = step
        else:  # tool result
            call_id = msg.get("tool_call_id") or msg.get("id")
            owner = by_call.get(str(call_id)) if call_id is not None else last_agent
            obs = {"call_id": str(call_id) if call_id is not None else None, "content": text}
            failed = is_error(msg, text)
            if owner is None:
                steps.append(new_step(len(steps), "environment", observations=[obs]))
                continue
            owner["observations"].append(obs)
            _record_check(owner, failed, text, obs["call_id"])
    return steps


def _record_check(step: dict[str, Any], failed: bool, text: str | None, call_id: str | None) -> None:
    """A failed result fails the step; a step passes only while all its results are clean.

    A failed check's detail is the tool's error and the call that got it (the value given; chat logs
    know no expected one, a source that does adds it).
    """
    if failed:
        step["check_passed"] = False
        call = next((c for c in step["tool_calls"] if c["id"] == call_id), None) if call_id is not None else None
        call = call or (step["tool_calls"][0] if len(step["tool_calls"]) == 1 else None)
        given = f" — given {call_text(call['name'], call['arguments'])}" if call else ""
        step["check_detail"] = (text or "").strip()[:ERROR_CHARS] + given
        step["error_label"] = "tool_error"
    elif step["check_passed"] is None:
        step["check_passed"] = True
        step["check_detail"] = "tool returned without an error"
    step["label_source"] = "heuristic"
