"""Chat datasets as trainers keep them: rows with `messages` and optional `tools` (Hugging Face Parquet or JSONL).

Horizon Lens's own exports (`horizonlens export --format openai-jsonl|hf-parquet`) are such rows, with their
metadata columns (trajectory_id, task_id, agent, teacher, domain, outcome, ...): those columns are read
back, so an export imports into the same runs with the same steps and text. A row of another dataset gets
an id from its own `id` or its content.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from horizonlens.corpus.schema import OUTCOMES
from horizonlens.errors import RecordError
from horizonlens.ingest.base import Converted, Format, content_id, count, number, require, trajectory
from horizonlens.ingest.chat import messages_to_steps
from horizonlens.ingest.formats.openai_chat import first_user, reward_outcome
from horizonlens.ingest.readers import Raw

# The columns a chat-dataset row may carry besides messages and tools (Horizon Lens exports write these).
COLUMNS = frozenset({"messages", "tools", "id", "trajectory_id", "task_id", "trial", "source", "agent", "teacher",
                     "domain", "outcome", "reward", "n_steps", "n_tokens", "truncated_at", "over_max_tokens"})


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value[:3])


def detect(sample: Any) -> bool:
    """A row with a list of chat `messages` and `tools`, a `trajectory_id`, or no column but the known ones."""
    return isinstance(sample, dict) and _is_messages(sample.get("messages")) and (
        "tools" in sample or "trajectory_id" in sample or set(sample) <= COLUMNS)


def tool_schemas(value: Any) -> list[Any] | None:
    """The row's tool schemas: a list, or the JSON text of one (Parquet keeps them as text); None if absent."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise RecordError(f"field 'tools' is text but not JSON ({str(exc)[:80]})") from None
    if not isinstance(value, list):
        raise RecordError(f"field 'tools' should be a list of tool schemas, got {type(value).__name__}")
    return value or None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def convert(raw: Raw) -> Iterator[Converted]:
    """One trajectory per row; a Horizon Lens export's metadata columns are kept."""
    v = raw.value
    steps = messages_to_steps(require(v, "messages", list))
    outcome = v.get("outcome")
    reward = number(v.get("reward"), "reward")
    if outcome not in OUTCOMES:
        reward, outcome = reward_outcome(reward)
    tid = _text(v.get("trajectory_id")) or f"chat:{_text(str(v['id'])) if v.get('id') is not None else content_id(v)}"
    meta: dict[str, Any] = {}
    tools = tool_schemas(v.get("tools"))
    if tools:
        meta["tools"] = tools
    if v.get("truncated_at") is not None:
        meta["truncated_at"] = count(v["truncated_at"], "truncated_at")
    trial = v.get("trial")
    yield trajectory(tid, _text(v.get("source")) or "chat-dataset", steps, task=first_user(steps),
                     task_id=_text(v.get("task_id")), trial=count(trial, "trial") if trial is not None else None,
                     agent=_text(v.get("agent")), teacher=_text(v.get("teacher")), domain=_text(v.get("domain")),
                     outcome=outcome, reward=reward, metadata=meta)


FORMAT = Format("chat-dataset", "Chat datasets (Hugging Face Parquet or JSONL rows with messages and tools; "
                                "Horizon Lens exports)", priority=15, detect=detect, convert=convert)
