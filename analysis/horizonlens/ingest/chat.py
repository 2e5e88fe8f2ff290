"""Chat messages (OpenAI style) → corpus steps; the shared core of several formats.

One step per message turn: system/user messages become system/user steps; an assistant message
becomes an agent step (reasoning, message, tool calls); a tool message is attached as an
observation to the agent step that made the call. Checks are set only where the source says
something: a tool result that reports an error fails the calling step's check; a step whose
calls all returned without an error passes (`label_source = heuristic`); otherwise null.

`steps_to_messages` is the way back (exports, docs/export.md). What a chat has no role for travels as
a message `name`, which chat templates ignore and this module reads back: a step's retrieved context is
a user message named `knowledge` before the step's own messages, an environment step's text a user
message named `environment`, and its observations tool messages named `environment`.
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
KNOWLEDGE, ENVIRONMENT = "knowledge", "environment"  # message names for what chat roles do not cover


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
    knowledge: list[str] = []  # context that arrived for the next step

    def add(step: dict[str, Any]) -> dict[str, Any]:
        if knowledge:
            step["knowledge"] = "\n".join(knowledge)
            knowledge.clear()
        steps.append(step)
        return step

    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise RecordError(f"message {i} is not an object")
        role = msg.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool", "function", "ipython"):
            raise RecordError(f"message {i} has unknown role {str(role)[:40]!r}")
        text = text_of(msg.get("content"))
        name = msg.get("name")
        if role in ("system", "developer"):
            add(new_step(len(steps), "system", message=text))
        elif role == "user" and name == KNOWLEDGE:
            knowledge.append(text or "")
        elif role == "user":
            add(new_step(len(steps), ENVIRONMENT if name == ENVIRONMENT else "user", message=text))
        elif role == "assistant":
            step = add(new_step(len(steps), "agent", message=text or None, reasoning=reasoning_of(msg),
                                tool_calls=tool_calls_of(msg)))
            last_agent = step
            for call in step["tool_calls"]:
                if call["id"]:
                    by_call[call["id"]] = step
        else:  # tool result
            call_id = msg.get("tool_call_id") or msg.get("id")
            obs = {"call_id": str(call_id) if call_id is not None else None, "content": text}
            if name == ENVIRONMENT:  # an environment step's observation (see the module docstring)
                if steps and steps[-1]["source"] == ENVIRONMENT and not knowledge:
                    steps[-1]["observations"].append(obs)
                else:
                    add(new_step(len(steps), ENVIRONMENT, observations=[obs]))
                continue
            owner = by_call.get(str(call_id)) if call_id is not None else last_agent
            failed = is_error(msg, text)
            if owner is None:
                add(new_step(len(steps), ENVIRONMENT, observations=[obs]))
                continue
            owner["observations"].append(obs)
            _record_check(owner, failed, text, obs["call_id"])
    if knowledge:  # context after the last turn still belongs to the run
        add(new_step(len(steps), ENVIRONMENT))
    return steps


def steps_to_messages(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-style chat messages for a run's steps: `messages_to_steps` read backwards, every text field kept.

    Steps are dicts with the corpus `steps` columns. Tool calls keep their ids; a call without one gets
    `call_<step>_<i>`, and an agent step's observations without a call id answer its calls in order, so every
    tool result is linked by `tool_call_id`.
    Assistant content is "" rather than null (chat templates print a null as "None").
    """
    out: list[dict[str, Any]] = []
    for s in steps:
        n, source = int(s["step"]), s.get("source")
        if s.get("knowledge") is not None:
            out.append({"role": "user", "name": KNOWLEDGE, "content": s["knowledge"]})
        observations = s.get("observations") or []
        if source == "agent":
            msg: dict[str, Any] = {"role": "assistant", "content": s.get("message") or ""}
            if s.get("reasoning"):
                msg["reasoning_content"] = s["reasoning"]
            ids = []
            calls = []
            for i, call in enumerate(s.get("tool_calls") or []):
                ids.append(call.get("id") or f"call_{n}_{i}")
                calls.append({"id": ids[-1], "type": "function",
                              "function": {"name": call.get("name") or "", "arguments": call.get("arguments") or "{}"}})
            if calls:
                msg["tool_calls"] = calls
            out.append(msg)
            unlinked = iter(ids)
            for obs in observations:
                call_id = obs.get("call_id") or next(unlinked, ids[-1] if ids else None)
                out.append({"role": "tool", "tool_call_id": call_id, "content": obs.get("content") or ""})
            continue
        if source == ENVIRONMENT:
            if s.get("message") is not None:
                out.append({"role": "user", "name": ENVIRONMENT, "content": s["message"]})
        elif s.get("message") is not None or not observations:
            out.append({"role": "system" if source == "system" else "user", "content": s.get("message") or ""})
        for obs in observations:
            tool: dict[str, Any] = {"role": "tool", "tool_call_id": obs.get("call_id"), "content": obs.get("content")
                                    or ""}
            if source == ENVIRONMENT:
                tool["name"] = ENVIRONMENT
            out.append(tool)
    return out


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
