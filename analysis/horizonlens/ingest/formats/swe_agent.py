"""SWE-agent `.traj` files: thought / action / observation per step, plus the chat history."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from horizonlens.corpus.actions import show_value
from horizonlens.errors import RecordError
from horizonlens.ingest.base import Converted, Format, agent_of, last_line, new_step, number, obj, run_id, trajectory
from horizonlens.ingest.chat import messages_to_steps, text_of
from horizonlens.ingest.formats.openai_chat import first_user
from horizonlens.ingest.readers import Raw

SWE_ERROR = re.compile(r"(Traceback \(most recent call last\)|command not found|No such file or directory|"
                       r"^Error\b|^usage: |SyntaxError|Your proposed edit has introduced new syntax error)", re.M)


def detect(sample: Any) -> bool:
    """A `trajectory`, or a `history` with SWE-agent's markers (info, environment, agent/message_type)."""
    return isinstance(sample, dict) and (
        "trajectory" in sample or (isinstance(sample.get("history"), list) and (
            "info" in sample or "environment" in sample or _has_swe_history(sample["history"]))))


def _has_swe_history(history: list[Any]) -> bool:
    return any(isinstance(m, dict) and ("agent" in m or "message_type" in m) for m in history[:4])


def _step(i: int, item: Any, n: int) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise RecordError(f"trajectory[{i}] is not an object")
    action = text_of(item.get("action")) or ""
    action = action.strip()
    obs = item.get("observation")
    obs = obs if isinstance(obs, str) else (json.dumps(obs, ensure_ascii=False) if obs is not None else None)
    tool = action.split()[0] if action else "noop"
    thought = item.get("thought")
    step = new_step(n, "agent", reasoning=thought if isinstance(thought, str) and thought else None,
                    tool_calls=[{"id": f"swe-{i}", "name": tool, "arguments": json.dumps({"command": action})}],
                    observations=[{"call_id": f"swe-{i}", "content": obs}] if obs is not None else [],
                    duration_s=number(item.get("execution_time"), f"trajectory[{i}].execution_time"))
    if obs is not None:
        error = SWE_ERROR.search(obs)
        detail = "no error in the observation"
        if error:  # the line that reads as an error (a traceback's last line), and the command that produced it
            line = last_line(obs) if error.group(0).startswith("Traceback") else \
                obs[obs.rfind("\n", 0, error.start()) + 1:].split("\n", 1)[0].strip()
            detail = f"observation reports an error: {show_value(line)} — command {show_value(action)}"
        step.update(check_passed=error is None, label_source="heuristic", check_detail=detail,
                    error_label="tool_error" if error else None)
    return step


def swe_agent_id(stem: str, agent: str | None) -> str:
    """The trajectory id of one SWE-agent run: `swe-agent@<model>:<file stem>` (`swe-agent:<stem>` without one)."""
    return run_id("swe-agent", agent, stem)


def _model(v: dict[str, Any]) -> Any:
    """The model of the run's replay config (`agent.model.name`), which SWE-agent stores as JSON text."""
    config = v.get("replay_config")
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            return None
    return obj(obj(obj(config).get("agent")).get("model")).get("name")


def convert(raw: Raw) -> Iterator[Converted]:
    """One trajectory per file; observations with errors fail the step's check; the replay config names the model."""
    v = raw.value
    if not isinstance(v, dict):
        raise RecordError("record is not a JSON object")
    info = obj(v.get("info"))
    stem = Path(raw.file).name.removesuffix(".traj")
    items = v.get("trajectory")
    history: list[Any] = v["history"] if isinstance(v.get("history"), list) else []
    if isinstance(items, list) and items:
        steps: list[dict[str, Any]] = []
        for m in history:  # the system prompt and the issue come from the history
            if isinstance(m, dict) and m.get("role") in ("system", "user"):
                steps.append(new_step(len(steps), m["role"], message=text_of(m.get("content"))))
                if m.get("role") == "user":
                    break
        for i, item in enumerate(items):
            steps.append(_step(i, item, len(steps)))
    elif history:  # function-calling demonstrations keep only the chat history
        messages = []
        for m in history:
            if not isinstance(m, dict):
                raise RecordError("a history entry is not an object")
            msg = {k: m.get(k) for k in ("role", "content", "tool_calls", "tool_call_id", "thought")}
            ids = m.get("tool_call_ids")
            if m.get("role") == "tool" and not msg["tool_call_id"] and isinstance(ids, list) and ids:
                msg["tool_call_id"] = ids[0]
            messages.append(msg)
        steps = messages_to_steps(messages)
    else:
        raise RecordError("neither 'trajectory' nor 'history' has any entries")
    status = info.get("exit_status")
    outcome = "unknown" if status in (None, "submitted") or str(status).startswith("submitted") else "failure"
    stats = obj(info.get("model_stats"))
    agent = agent_of(_model(v), raw)
    yield trajectory(swe_agent_id(stem, agent), "swe-agent", steps, task=first_user(steps), domain="engineering",
                     agent=agent,
                     task_id=f"swe-agent:{stem}", outcome=outcome,
                     cost_usd=number(stats.get("instance_cost"), "info.model_stats.instance_cost"),
                     metadata={"exit_status": status, "submission": info.get("submission"),
                               "environment": v.get("environment")})


FORMAT = Format("swe-agent", "SWE-agent .traj", priority=20, detect=detect, convert=convert)
