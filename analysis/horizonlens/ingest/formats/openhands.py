"""OpenHands evaluation output (`output.jsonl`): an event history of actions and observations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from horizonlens.corpus.actions import expected_given, parse_arguments, show_value
from horizonlens.errors import RecordError
from horizonlens.ingest.base import Converted, Format, agent_of, new_step, number, obj, require, run_id, trajectory
from horizonlens.ingest.chat import text_of
from horizonlens.ingest.formats.openai_chat import first_user
from horizonlens.ingest.readers import Raw


def detect(sample: Any) -> bool:
    """An `instance_id` with a `history` list."""
    return isinstance(sample, dict) and "instance_id" in sample and isinstance(sample.get("history"), list)


def openhands_id(instance: object, agent: str | None) -> str:
    """The trajectory id of one OpenHands instance run: `openhands@<model>:<instance_id>`."""
    return run_id("openhands", agent, instance)


def model_of(metadata: Any) -> Any:
    """The model an OpenHands run's metadata names (`llm_config.model`, older outputs `model_name`)."""
    meta = obj(metadata)
    return obj(meta.get("llm_config")).get("model") or meta.get("model_name")


def convert(raw: Raw) -> Iterator[Converted]:
    """One trajectory per instance; exit codes set the checks; the metadata's model is the agent."""
    v = raw.value
    steps: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    for i, event in enumerate(require(v, "history", list)):
        if isinstance(event, list) and len(event) == 2:  # older output: [action, observation] pairs
            for part in event:
                _event(part, steps, by_id, i)
            continue
        _event(event, steps, by_id, i)
    result = obj(v.get("test_result"))
    resolved = result.get("resolved")
    if resolved is None:
        resolved = obj(result.get("report")).get("resolved")
    outcome = "unknown" if resolved is None else ("success" if resolved else "failure")
    # the harness's per-test results (SWE-bench: FAIL_TO_PASS, PASS_TO_PASS), the reference the outcome comes from
    status = obj(result.get("report")).get("tests_status")
    tests = {"tests_status": status} if isinstance(status, dict) else {}
    instruction = v.get("instruction")
    iid = v.get("instance_id")
    if iid is None:
        raise RecordError("missing field 'instance_id'")
    agent = agent_of(model_of(v.get("metadata")), raw)
    yield trajectory(openhands_id(iid, agent), "openhands", steps, task_id=f"openhands:{iid}", agent=agent,
                     task=instruction if isinstance(instruction, str) else first_user(steps),
                     domain="engineering", outcome=outcome, reward=None if resolved is None else float(bool(resolved)),
                     cost_usd=number(obj(v.get("metrics")).get("accumulated_cost"), "metrics.accumulated_cost"),
                     metadata={"error": v.get("error"), "agent_class": obj(v.get("metadata")).get("agent_class"),
                               **tests})


def _key(value: Any) -> str:
    """Event ids as dictionary keys (ids may be any JSON value)."""
    return json.dumps(value, sort_keys=True, default=str)


def _event(e: Any, steps: list[dict[str, Any]], by_id: dict[str, dict[str, Any]], i: int) -> None:
    if not isinstance(e, dict):
        raise RecordError(f"history[{i}] is not an object")
    args = obj(e.get("args"))
    if "observation" in e:
        _observation(e, steps, by_id)
        return
    action = e.get("action")
    source = e.get("source")
    if source == "user" or action == "system":
        steps.append(new_step(len(steps), "system" if action == "system" else "user",
                              message=text_of(e.get("message") or args.get("content"))))
        return
    thought = args.get("thought") if isinstance(args.get("thought"), str) else None
    if action in ("message", "finish") and not args.get("command"):
        steps.append(new_step(len(steps), "agent", message=text_of(args.get("content") or e.get("message")),
                              reasoning=thought or None))
        by_id[_key(e.get("id"))] = steps[-1]
        return
    call_args = {k: val for k, val in args.items() if k != "thought"}
    call = {"id": str(e.get("id")), "name": text_of(action), "arguments": json.dumps(call_args, default=str)}
    steps.append(new_step(len(steps), "agent", reasoning=thought or None, tool_calls=[call]))
    by_id[_key(e.get("id"))] = steps[-1]


def _observation(e: dict[str, Any], steps: list[dict[str, Any]], by_id: dict[str, dict[str, Any]]) -> None:
    """An observation attaches to the action it answers (`cause`); an exit code sets that step's check."""
    owner = by_id.get(_key(e.get("cause")))
    content = e.get("content") if isinstance(e.get("content"), str) else json.dumps(e.get("content"), default=str)
    obs = {"call_id": str(e.get("cause")) if e.get("cause") is not None else None, "content": content}
    extras = obj(e.get("extras"))
    code = extras.get("exit_code", obj(extras.get("metadata")).get("exit_code"))
    is_code = isinstance(code, int) and not isinstance(code, bool)
    failed = e.get("observation") == "error" or (is_code and code != 0)
    if owner is None:
        steps.append(new_step(len(steps), "environment", observations=[obs]))
        return
    owner["observations"].append(obs)
    if e.get("observation") == "error" or is_code:
        command = obj(parse_arguments(owner["tool_calls"][0]["arguments"])).get("command") \
            if owner["tool_calls"] else None
        ran = f" — command {show_value(command)}" if command else ""
        detail = f"exit code: {expected_given(0, code)}{ran}" if is_code else \
            f"error observation: {show_value((content or '').strip())}{ran}"
        owner.update(check_passed=not failed, label_source="heuristic", check_detail=detail,
                     error_label="tool_error" if failed else None)

FORMAT = Format("openhands", "OpenHands evaluation output (instance_id + history)", priority=50, detect=detect,
                convert=convert)
