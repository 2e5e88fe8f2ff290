"""ATIF, the Agent Trajectory Interchange Format (Harbor): steps with tool calls, observations, metrics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from horizonlens.errors import RecordError
from horizonlens.ingest.base import (
    Converted,
    Format,
    agent_of,
    content_id,
    count,
    new_step,
    number,
    obj,
    require,
    run_id,
    trajectory,
)
from horizonlens.ingest.chat import arguments_text, text_of
from horizonlens.ingest.formats.openai_chat import first_user, reward_outcome
from horizonlens.ingest.readers import Raw, first_value

STEP_SOURCES = {"system": "system", "user": "user", "agent": "agent"}


def detect(sample: Any) -> bool:
    """`steps` with a `schema_version` or a `session_id`."""
    return isinstance(sample, dict) and "steps" in sample and ("schema_version" in sample or "session_id" in sample)


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 timestamp (UTC when it has no zone), or None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _result(path: Path) -> dict[str, Any]:
    """The trial's `result.json` beside the trajectory (Harbor writes one per trial), or an empty object."""
    result = path.parent / "result.json"
    return obj(first_value(result)) if result.is_file() else {}


def _reward(data: dict[str, Any]) -> float | None:
    """The verifier's reward from a trial's result, if it has one."""
    verifier = obj(obj(data.get("verifier_result")).get("rewards")).get("reward")
    for candidate in (verifier, data.get("reward"), obj(data.get("rewards")).get("reward")):
        if isinstance(candidate, (int, float)) and not isinstance(candidate, bool):
            return number(candidate, "result.json reward")
    return None


def _step(i: int, s: Any, n: int) -> dict[str, Any]:
    if not isinstance(s, dict):
        raise RecordError(f"steps[{i}] is not an object")
    given = s.get("source")
    source = STEP_SOURCES.get(given, "environment") if isinstance(given, str) else "environment"
    raw_calls = s.get("tool_calls") or []
    calls = [{"id": str(c.get("tool_call_id")), "name": text_of(c.get("function_name")),
              "arguments": arguments_text(c.get("arguments"))}
             for c in (raw_calls if isinstance(raw_calls, list) else []) if isinstance(c, dict)]
    results = obj(s.get("observation")).get("results")
    obs = [{"call_id": str(r.get("source_call_id")) if r.get("source_call_id") is not None else None,
            "content": text_of(r.get("content"))} for r in (results if isinstance(results, list) else [])
           if isinstance(r, dict)]
    metrics = obj(s.get("metrics"))
    tokens = sum(count(metrics.get(k), f"steps[{i}].metrics.{k}") or 0
                 for k in ("prompt_tokens", "completion_tokens")) or None
    reasoning = s.get("reasoning_content")
    return new_step(n, source, message=text_of(s.get("message")), tool_calls=calls, observations=obs,
                    reasoning=reasoning if isinstance(reasoning, str) else None,
                    started_at=parse_time(s.get("timestamp")), n_tokens=tokens,
                    cost_usd=number(metrics.get("cost_usd"), f"steps[{i}].metrics.cost_usd"))


def atif_id(session: object, agent: str | None) -> str:
    """The trajectory id of one ATIF session: `atif@<agent>:<session_id>` (`atif:<session_id>` without an agent)."""
    return run_id("atif", agent, session)


def convert(raw: Raw) -> Iterator[Converted]:
    """One trajectory per session; ATIF has no per-step checks, so none are set.

    The agent is the model the trajectory names (`agent.model_name`, else `agent.name`); the task is the
    trial result's `task_name` when a `result.json` sits beside the file.
    """
    v = raw.value
    steps: list[dict[str, Any]] = []
    for i, s in enumerate(require(v, "steps", list)):
        steps.append(_step(i, s, len(steps)))
    result = _result(Path(raw.file))
    reward, outcome = reward_outcome(_reward(result))
    agent = obj(v.get("agent"))
    final = obj(v.get("final_metrics"))
    sid = v.get("session_id") or content_id(v)
    name = agent_of(agent.get("model_name") or agent.get("name"), raw)
    task_name = result.get("task_name")
    yield trajectory(atif_id(sid, name), "atif", steps, agent=name,
                     task_id=f"atif:{task_name}" if isinstance(task_name, str) and task_name else None,
                     task=first_user(steps), reward=reward, outcome=outcome,
                     cost_usd=number(final.get("total_cost_usd"), "final_metrics.total_cost_usd"),
                     started_at=steps[0]["started_at"] if steps else None,
                     metadata={"schema_version": v.get("schema_version"), "agent": agent})


FORMAT = Format("atif", "Agent Trajectory Interchange Format (Harbor)", priority=70, detect=detect, convert=convert)
