"""OpenAI-style chat logs: τ-bench runs, Agents-A1-style harness JSONL, and bare message lists.

The lowest priority: many formats carry a `messages` list, and the more specific ones win.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from horizonlens.corpus.actions import ABSENT, differences, parse_arguments
from horizonlens.errors import RecordError
from horizonlens.ingest.base import Converted, Format, content_id, count, number, obj, require, trajectory
from horizonlens.ingest.chat import messages_to_steps
from horizonlens.ingest.readers import Raw

MAX_DIFFERENCES = 5  # differing arguments named in one check's detail


def detect(sample: Any) -> bool:
    """A list of messages (objects with a role), a τ-bench run (traj + task_id) or a record with messages."""
    if isinstance(sample, list):
        return bool(sample) and all(isinstance(m, dict) and "role" in m for m in sample[:3])
    return isinstance(sample, dict) and (("traj" in sample and "task_id" in sample) or "messages" in sample)


def reward_outcome(reward: Any) -> tuple[float | None, str]:
    """A reward (bool or number) and the outcome it means: 1 (or true) is success, anything less failure."""
    if isinstance(reward, bool):
        return float(reward), "success" if reward else "failure"
    if isinstance(reward, (int, float)):
        value = number(reward, "reward")
        assert value is not None
        return value, "success" if value >= 1 - 1e-9 else "failure"
    return None, "unknown"


def first_user(steps: list[dict[str, Any]]) -> str | None:
    """The first user message: the task, where a source does not state it separately."""
    return next((s["message"] for s in steps if s["source"] == "user" and s["message"]), None)


def expect_actions(steps: list[dict[str, Any]], actions: Any) -> None:
    """Add the task's expected action to the detail of each failed call of a tool the task expects.

    τ-bench lists the actions its reward replays (`reward_info.actions`: name and kwargs). A failed call of one
    of those tools is set beside the closest expected call of it: each argument that differs, with both values,
    or "same arguments" (then the environment refused the expected action itself).
    """
    expected = [(a["name"], a.get("kwargs")) for a in actions if isinstance(a, dict) and isinstance(a.get("name"), str)
                ] if isinstance(actions, list) else []
    for step in steps:
        if step["check_passed"] is not False or not step["tool_calls"]:
            continue
        for call in step["tool_calls"]:
            given = parse_arguments(call["arguments"])
            options = [differences(kwargs, given) for name, kwargs in expected if name == call["name"]]
            if not options:
                continue
            closest = min(options, key=lambda d: (sum(x.expected is not ABSENT for x in d), len(d)))
            named = [d.text() for d in closest if d.expected is not ABSENT][:MAX_DIFFERENCES]
            step["check_detail"] += (f" — the task expects {call['name']} with "
                                     + ("; ".join(named) if named else "the same arguments"))


def convert(raw: Raw) -> Iterator[Converted]:
    """One trajectory per record; ids from the source (τ-bench task and trial, `id`) or the content."""
    v = raw.value
    if isinstance(v, list):
        steps = messages_to_steps(v)
        yield trajectory(f"chat:{content_id(v)}", "openai-chat", steps, task=first_user(steps))
        return
    if not isinstance(v, dict):
        raise RecordError("record is not a JSON object or a list of messages")
    if "traj" in v:  # τ-bench run: {task_id, trial, reward, info, traj}
        steps = messages_to_steps(require(v, "traj", list))
        reward, outcome = reward_outcome(v.get("reward"))
        info = obj(v.get("info"))
        expect_actions(steps, obj(info.get("reward_info")).get("actions"))
        task = obj(info.get("task"))
        trial = v.get("trial")
        trial = count(trial, "trial") if isinstance(trial, int) and not isinstance(trial, bool) else None
        instruction = task.get("instruction")
        yield trajectory(f"tau-bench:{v.get('task_id')}:{v.get('trial')}", "tau-bench", steps,
                         task_id=f"tau-bench:{v.get('task_id')}", trial=trial, domain="tool_calling", reward=reward,
                         outcome=outcome, task=instruction if isinstance(instruction, str) else first_user(steps),
                         metadata={"user_id": task.get("user_id"), "reward_info": info.get("reward_info")})
        return
    steps = messages_to_steps(require(v, "messages", list))
    reward, outcome = reward_outcome(v.get("reward", v.get("score")))
    if outcome == "unknown" and isinstance(v.get("correct"), bool):
        reward, outcome = reward_outcome(v["correct"])
    tid = str(v.get("id") or v.get("trajectory_id") or content_id(v))
    meta = {k: v.get(k) for k in ("answer", "prediction", "termination") if k in v}
    question = v.get("question")
    yield trajectory(f"chat:{tid}", str(v.get("source") or "openai-chat"), steps,
                     task=question if isinstance(question, str) else first_user(steps),
                     task_id=str(v["task_id"]) if v.get("task_id") is not None else None,
                     agent=v.get("model") if isinstance(v.get("model"), str) else None,
                     reward=reward, outcome=outcome, metadata=meta)


FORMAT = Format("openai-chat", "OpenAI-style chat messages (tau-bench runs, harness JSONL, message lists)",
                priority=10, detect=detect, convert=convert)
