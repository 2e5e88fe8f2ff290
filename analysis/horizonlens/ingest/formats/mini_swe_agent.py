"""mini-swe-agent `.traj.json`: chat messages whose bash blocks are the tool calls."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from horizonlens.corpus.actions import expected_given, parse_arguments, show_value
from horizonlens.errors import RecordError
from horizonlens.ingest.base import Converted, Format, agent_of, new_step, number, obj, require, run_id, trajectory
from horizonlens.ingest.chat import text_of
from horizonlens.ingest.formats.openai_chat import first_user
from horizonlens.ingest.readers import Raw

BASH_BLOCK = re.compile(r"```(?:bash|sh)?\s*\n(.*?)```", re.S)
RETURNCODE = re.compile(r"<returncode>\s*(-?\d{1,18})\s*</returncode>")


def detect(sample: Any) -> bool:
    """`messages` with a `trajectory_format`, or with `info.exit_status`."""
    return isinstance(sample, dict) and "messages" in sample and (
        "trajectory_format" in sample or "exit_status" in obj(sample.get("info")))


def convert(raw: Raw) -> Iterator[Converted]:
    """One trajectory per file; each `<returncode>` sets the check of the step that ran the command."""
    v = raw.value
    messages = require(v, "messages", list)
    steps: list[dict[str, Any]] = []
    pending: dict[str, Any] | None = None
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise RecordError(f"messages[{i}] is not an object")
        text = text_of(m.get("content")) or ""
        role = m.get("role")
        code = RETURNCODE.search(text) if role == "user" else None
        if role == "assistant":
            block = BASH_BLOCK.search(text)
            thought = text[: block.start()].strip() if block else text.strip()
            calls = []
            if block:
                calls.append({"id": f"mini-{i}", "name": "bash",
                              "arguments": json.dumps({"command": block.group(1).strip()})})
            pending = new_step(len(steps), "agent", reasoning=thought or None, tool_calls=calls,
                               message=None if block else text)
            steps.append(pending)
        elif code and pending is not None and pending["tool_calls"]:
            rc = int(code.group(1))
            pending["observations"].append({"call_id": pending["tool_calls"][0]["id"], "content": text})
            command = parse_arguments(pending["tool_calls"][0]["arguments"]).get("command", "")
            pending.update(check_passed=rc == 0, label_source="heuristic",
                           check_detail=f"return code: {expected_given(0, rc)} — command {show_value(command)}",
                           error_label=None if rc == 0 else "nonzero_exit")
            pending = None
        elif role in ("system", "user"):
            steps.append(new_step(len(steps), role, message=text))
            pending = None
        else:
            raise RecordError(f"messages[{i}] has unknown role {str(role)[:40]!r}")
    info = obj(v.get("info"))
    status = info.get("exit_status")
    outcome = "unknown" if status in (None, "Submitted", "submitted") else "failure"
    stats = obj(info.get("model_stats"))
    name = Path(raw.file).name.removesuffix(".json").removesuffix(".traj")
    instance = v.get("instance_id")
    agent = agent_of(obj(obj(info.get("config")).get("model")).get("model_name"), raw)
    yield trajectory(run_id("mini-swe-agent", agent, instance or name), "mini-swe-agent", steps, domain="engineering",
                     agent=agent, task_id=f"mini-swe-agent:{instance}" if instance else None,
                     task=first_user(steps), outcome=outcome,
                     cost_usd=number(stats.get("instance_cost"), "info.model_stats.instance_cost"),
                     metadata={"exit_status": status, "submission": info.get("submission"),
                               "trajectory_format": v.get("trajectory_format")})


FORMAT = Format("mini-swe-agent", "mini-swe-agent .traj.json", priority=40, detect=detect, convert=convert)
