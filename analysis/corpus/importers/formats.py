"""The source formats Horizon Lens imports, each as detect + convert (docs/importing.md).

A converter turns one parsed record into zero or more `(trajectory row, step rows)` pairs and
raises ValueError with a reason for a malformed record. Trajectory ids are stable: built from
the source's own ids where it has them, else from a hash of the record's content.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from horizonlens.corpus.importers.chat import messages_to_steps, new_step, text_of
from horizonlens.corpus.importers.readers import Raw

Converted = tuple[dict[str, Any], list[dict[str, Any]]]


@dataclass(frozen=True)
class Format:
    """A source format: its `--format` name, a description, a content test and a converter."""

    name: str
    description: str
    detect: Callable[[Any], bool]  # does this parsed record look like this format?
    convert: Callable[[Raw], Iterator[Converted]]  # record -> (trajectory row, step rows); ValueError if malformed


def content_id(value: Any) -> str:
    """A stable 12-hex-digit id from a record's content, for sources without ids of their own."""
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def trajectory(tid: str, source: str, steps: list[dict[str, Any]], **fields: Any) -> Converted:
    """A trajectory row with every column of the corpus contract (unknown ones None), paired with its steps."""
    row = {"trajectory_id": tid, "task_id": None, "trial": None, "source": source, "domain": None, "agent": None,
           "teacher": None, "task": None, "outcome": "unknown", "reward": None, "started_at": None,
           "duration_s": None, "cost_usd": None, "metadata": "{}"}
    row.update(fields)
    if isinstance(row["metadata"], dict):
        row["metadata"] = json.dumps(row["metadata"], ensure_ascii=False, default=str)
    return row, steps


def _require(value: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(value, dict):
        raise ValueError("record is not a JSON object")
    if key not in value:
        raise ValueError(f"missing field '{key}'")
    if not isinstance(value[key], kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ValueError(f"field '{key}' should be {name}, got {type(value[key]).__name__}")
    return value[key]


def _obj(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one: optional nested objects read the same either way."""
    return value if isinstance(value, dict) else {}


def _reward_outcome(reward: Any) -> tuple[float | None, str]:
    if isinstance(reward, bool):
        return float(reward), "success" if reward else "failure"
    if isinstance(reward, (int, float)):
        return float(reward), "success" if reward >= 1 - 1e-9 else "failure"
    return None, "unknown"


def _first_user(steps: list[dict[str, Any]]) -> str | None:
    return next((s["message"] for s in steps if s["source"] == "user" and s["message"]), None)


# --- OpenAI chat: tau-bench runs, Agents-A1-style harness output, plain message lists -------------
def _is_chat(v: Any) -> bool:
    if isinstance(v, list):
        return bool(v) and all(isinstance(m, dict) and "role" in m for m in v[:3])
    return isinstance(v, dict) and (("traj" in v and "task_id" in v) or
                                    ("messages" in v and "trajectory_format" not in v and "info" not in v))


def _convert_chat(raw: Raw) -> Iterator[Converted]:
    v = raw.value
    if isinstance(v, list):
        steps = messages_to_steps(v)
        yield trajectory(f"chat:{content_id(v)}", "openai-chat", steps, task=_first_user(steps))
        return
    if "traj" in v:  # tau-bench run: {task_id, trial, reward, info, traj}
        steps = messages_to_steps(_require(v, "traj", list))
        reward, outcome = _reward_outcome(v.get("reward"))
        info = _obj(v.get("info"))
        task = _obj(info.get("task"))
        trial = v.get("trial")
        yield trajectory(f"tau-bench:{v['task_id']}:{trial}", "tau-bench", steps, task_id=f"tau-bench:{v['task_id']}",
                         trial=int(trial) if isinstance(trial, int) else None, domain="tool_calling", reward=reward,
                         outcome=outcome, task=task.get("instruction") or _first_user(steps),
                         metadata={"user_id": task.get("user_id"), "reward_info": info.get("reward_info")})
        return
    steps = messages_to_steps(_require(v, "messages", list))
    reward, outcome = _reward_outcome(v.get("reward", v.get("score")))
    if outcome == "unknown" and isinstance(v.get("correct"), bool):
        reward, outcome = _reward_outcome(v["correct"])
    tid = str(v.get("id") or v.get("trajectory_id") or content_id(v))
    meta = {k: v.get(k) for k in ("answer", "prediction", "termination") if k in v}
    yield trajectory(f"chat:{tid}", str(v.get("source") or "openai-chat"), steps,
                     task=v.get("question") if isinstance(v.get("question"), str) else _first_user(steps),
                     task_id=str(v["task_id"]) if v.get("task_id") is not None else None, agent=v.get("model"),
                     reward=reward, outcome=outcome, metadata=meta)


# --- SWE-agent .traj ---------------------------------------------------------------------------
SWE_ERROR = re.compile(r"(Traceback \(most recent call last\)|command not found|No such file or directory|"
                       r"^Error\b|^usage: |SyntaxError|Your proposed edit has introduced new syntax error)", re.M)


def _is_swe_agent(v: Any) -> bool:
    return isinstance(v, dict) and "mistake_step" not in v and "instance_id" not in v and (
        "trajectory" in v or ("history" in v and isinstance(v.get("history"), list)
                              and ("info" in v or "environment" in v or _has_swe_history(v["history"]))))


def _has_swe_history(history: list[Any]) -> bool:
    return any(isinstance(m, dict) and ("agent" in m or "message_type" in m) for m in history[:4])


def _convert_swe_agent(raw: Raw) -> Iterator[Converted]:
    v = raw.value
    info = _obj(v.get("info"))
    stem = Path(raw.file).name.removesuffix(".traj")
    items = v.get("trajectory")
    history = v.get("history") if isinstance(v.get("history"), list) else []
    if isinstance(items, list) and items:
        steps: list[dict[str, Any]] = []
        for m in history:  # the system prompt and the issue come from the history
            if isinstance(m, dict) and m.get("role") in ("system", "user"):
                steps.append(new_step(len(steps), m["role"], message=text_of(m.get("content"))))
                if m.get("role") == "user":
                    break
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ValueError(f"trajectory[{i}] is not an object")
            action = str(item.get("action") or "").strip()
            obs = item.get("observation")
            obs = obs if isinstance(obs, str) else (json.dumps(obs) if obs is not None else None)
            tool = action.split()[0] if action else "noop"
            seconds = float(item["execution_time"]) if _is_number(item.get("execution_time")) else None
            step = new_step(len(steps), "agent", reasoning=item.get("thought") or None,
                            tool_calls=[{"id": f"swe-{i}", "name": tool, "arguments": json.dumps({"command": action})}],
                            observations=[{"call_id": f"swe-{i}", "content": obs}] if obs is not None else [],
                            duration_s=seconds)
            if obs is not None:
                failed = bool(SWE_ERROR.search(obs))
                step.update(check_passed=not failed, label_source="heuristic",
                            check_detail="observation reports an error" if failed else "no error in the observation",
                            error_label="tool_error" if failed else None)
            steps.append(step)
    elif history:  # function-calling demonstrations keep only the chat history
        messages = []
        for m in history:
            if not isinstance(m, dict):
                raise ValueError("a history entry is not an object")
            msg = {k: m.get(k) for k in ("role", "content", "tool_calls", "tool_call_id", "thought")}
            if m.get("role") == "tool" and not msg["tool_call_id"]:
                msg["tool_call_id"] = (m.get("tool_call_ids") or [None])[0]
            messages.append(msg)
        steps = messages_to_steps(messages)
    else:
        raise ValueError("neither 'trajectory' nor 'history' has any entries")
    status = info.get("exit_status")
    outcome = "unknown" if status in (None, "submitted") or str(status).startswith("submitted") else "failure"
    stats = _obj(info.get("model_stats"))
    yield trajectory(f"swe-agent:{stem}", "swe-agent", steps, task=_first_user(steps), domain="engineering",
                     task_id=f"swe-agent:{stem}", outcome=outcome, cost_usd=stats.get("instance_cost"),
                     metadata={"exit_status": status, "submission": info.get("submission"),
                               "environment": v.get("environment")})


def _is_number(x: Any) -> bool:
    try:
        float(x)
        return True
    except (TypeError, ValueError):
        return False


# --- mini-swe-agent .traj.json -----------------------------------------------------------------
BASH_BLOCK = re.compile(r"```(?:bash|sh)?\s*\n(.*?)```", re.S)
RETURNCODE = re.compile(r"<returncode>\s*(-?\d+)\s*</returncode>")


def _is_mini_swe(v: Any) -> bool:
    return isinstance(v, dict) and "messages" in v and (
        "trajectory_format" in v or (isinstance(v.get("info"), dict) and "exit_status" in v["info"]))


def _convert_mini_swe(raw: Raw) -> Iterator[Converted]:
    v = raw.value
    messages = _require(v, "messages", list)
    steps: list[dict[str, Any]] = []
    pending: dict[str, Any] | None = None
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ValueError(f"messages[{i}] is not an object")
        text = text_of(m.get("content")) or ""
        role = m.get("role")
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
        elif role == "user" and pending is not None and pending["tool_calls"] and RETURNCODE.search(text):
            code = int(RETURNCODE.search(text).group(1))  # type: ignore[union-attr]
            pending["observations"].append({"call_id": pending["tool_calls"][0]["id"], "content": text})
            pending.update(check_passed=code == 0, check_detail=f"return code {code}", label_source="heuristic",
                           error_label=None if code == 0 else "nonzero_exit")
            pending = None
        elif role in ("system", "user"):
            steps.append(new_step(len(steps), role, message=text))
            pending = None
        else:
            raise ValueError(f"messages[{i}] has unknown role {role!r}")
    info = _obj(v.get("info"))
    status = info.get("exit_status")
    outcome = "unknown" if status in (None, "Submitted", "submitted") else "failure"
    stats = _obj(info.get("model_stats"))
    name = Path(raw.file).name.removesuffix(".json").removesuffix(".traj")
    yield trajectory(f"mini-swe-agent:{v.get('instance_id') or name}", "mini-swe-agent", steps, domain="engineering",
                     task=_first_user(steps), outcome=outcome, cost_usd=stats.get("instance_cost"),
                     metadata={"exit_status": status, "submission": info.get("submission"),
                               "trajectory_format": v.get("trajectory_format")})


# --- ATIF (Harbor) -----------------------------------------------------------------------------
def _is_atif(v: Any) -> bool:
    return isinstance(v, dict) and "steps" in v and ("schema_version" in v or "session_id" in v)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _atif_reward(path: Path) -> float | None:
    result = path.parent / "result.json"
    if not result.exists():
        return None
    try:
        data = json.loads(result.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None
    for candidate in (data.get("verifier_result", {}).get("rewards", {}).get("reward") if isinstance(
            data.get("verifier_result"), dict) and isinstance(data["verifier_result"].get("rewards"), dict) else None,
                      data.get("reward"), (data.get("rewards") or {}).get("reward") if isinstance(
            data.get("rewards"), dict) else None):
        if isinstance(candidate, (int, float)) and not isinstance(candidate, bool):
            return float(candidate)
    return None


def _convert_atif(raw: Raw) -> Iterator[Converted]:
    v = raw.value
    steps: list[dict[str, Any]] = []
    for i, s in enumerate(_require(v, "steps", list)):
        if not isinstance(s, dict):
            raise ValueError(f"steps[{i}] is not an object")
        source = {"system": "system", "user": "user", "agent": "agent"}.get(str(s.get("source")), "environment")
        calls = [{"id": str(c.get("tool_call_id")), "name": c.get("function_name"),
                  "arguments": json.dumps(c.get("arguments"), ensure_ascii=False)
                  if not isinstance(c.get("arguments"), str) else c["arguments"]}
                 for c in (s.get("tool_calls") or []) if isinstance(c, dict)]
        results = (s.get("observation") or {}).get("results") if isinstance(s.get("observation"), dict) else None
        obs = [{"call_id": str(r.get("source_call_id")) if r.get("source_call_id") is not None else None,
                "content": text_of(r.get("content"))} for r in (results or []) if isinstance(r, dict)]
        metrics = _obj(s.get("metrics"))
        tokens = sum(int(metrics.get(k) or 0) for k in ("prompt_tokens", "completion_tokens")) or None
        steps.append(new_step(len(steps), source, message=text_of(s.get("message")),
                              reasoning=s.get("reasoning_content"), tool_calls=calls, observations=obs,
                              started_at=_parse_time(s.get("timestamp")), n_tokens=tokens,
                              cost_usd=metrics.get("cost_usd")))
    reward, outcome = _reward_outcome(_atif_reward(Path(raw.file)))
    agent = _obj(v.get("agent"))
    final = _obj(v.get("final_metrics"))
    sid = v.get("session_id") or content_id(v)
    yield trajectory(f"atif:{sid}", "atif", steps, agent=agent.get("model_name") or agent.get("name"),
                     task=_first_user(steps), reward=reward, outcome=outcome, cost_usd=final.get("total_cost_usd"),
                     started_at=steps[0]["started_at"] if steps else None,
                     metadata={"schema_version": v.get("schema_version"), "agent": agent})


# --- Who&When failure-attribution logs -----------------------------------------------------------
def _is_who_and_when(v: Any) -> bool:
    return isinstance(v, dict) and "history" in v and ("mistake_step" in v or "mistake_agent" in v)


def _bool(x: Any) -> bool | None:
    if isinstance(x, bool):
        return x
    if isinstance(x, str) and x.strip().lower() in ("true", "false"):
        return x.strip().lower() == "true"
    return None


def _convert_who_and_when(raw: Raw) -> Iterator[Converted]:
    v = raw.value
    history = _require(v, "history", list)
    try:
        mistake = int(v.get("mistake_step")) if v.get("mistake_step") not in (None, "") else None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"mistake_step is not an index: {v.get('mistake_step')!r}") from exc
    steps = [new_step(0, "user", message=v.get("question") if isinstance(v.get("question"), str) else None)]
    for i, m in enumerate(history):  # history[i] becomes step i + 1 (step 0 is the question)
        if not isinstance(m, dict):
            raise ValueError(f"history[{i}] is not an object")
        text = text_of(m.get("content"))
        name = m.get("name") or m.get("role")
        terminal = "terminal" in str(name).lower() or str(text or "").startswith("exitcode:")
        step = new_step(len(steps), "environment" if terminal else "agent", message=None if terminal else text,
                        observations=[{"call_id": None, "content": text}] if terminal else [],
                        reasoning=None)
        exit_code = re.match(r"exitcode:\s*(-?\d+)", text or "")
        if terminal and exit_code:
            code = int(exit_code.group(1))
            step.update(check_passed=code == 0, check_detail=f"exit code {code}", label_source="heuristic",
                        error_label=None if code == 0 else "execution_failed")
        step["is_decisive_error"] = (i == mistake) if mistake is not None else None
        if i == mistake:
            step.update(label_source="annotation", error_label=step["error_label"] or "decisive_mistake",
                        check_detail=str(v.get("mistake_reason") or "")[:500] or step["check_detail"])
        step["agent_name"] = name
        steps.append(step)
    if mistake is not None and not 0 <= mistake < len(history):
        raise ValueError(f"mistake_step {mistake} is outside the history (0..{len(history) - 1})")
    correct = _bool(v.get("is_correct"))
    if correct is None:
        correct = _bool(v.get("is_corrected"))
    qid = v.get("question_ID") or Path(raw.file).stem
    for s in steps:  # the speaking agent's name goes into the message header, not a column
        name = s.pop("agent_name", None)
        if name and s["source"] == "agent" and s["message"] is not None:
            s["message"] = f"[{name}] {s['message']}"
    yield trajectory(f"who-and-when:{Path(raw.file).parent.name}:{Path(raw.file).stem}", "who-and-when", steps,
                     task=v.get("question"), task_id=f"who-and-when:{qid}", domain="general",
                     agent="multi-agent",
                     outcome="unknown" if correct is None else ("success" if correct else "failure"),
                     reward=None if correct is None else float(correct),
                     metadata={"mistake_agent": v.get("mistake_agent"), "mistake_step": mistake,
                               "mistake_reason": v.get("mistake_reason"), "ground_truth": v.get("ground_truth"),
                               "level": v.get("level")})


# --- Inspect AI logs (.eval zip members and .json logs) ----------------------------------------------
def _is_inspect(v: Any) -> bool:
    return isinstance(v, dict) and (("samples" in v and "eval" in v) or
                                    ("messages" in v and "scores" in v and "epoch" in v))


def _inspect_messages(messages: list[Any]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        if not isinstance(m, dict):
            raise ValueError("a message is not an object")
        out.append({**m, "content": m.get("content")})
    return out


def _score(scores: Any) -> tuple[float | None, str]:
    if not isinstance(scores, dict) or not scores:
        return None, "unknown"
    first = next(iter(scores.values()))
    value = first.get("value") if isinstance(first, dict) else first
    if isinstance(value, str):
        letter = value.strip().upper()
        if letter in ("C", "CORRECT"):
            return 1.0, "success"
        if letter in ("I", "INCORRECT"):
            return 0.0, "failure"
        if letter == "P":
            return 0.5, "failure"
        return None, "unknown"
    return _reward_outcome(value)


def _convert_inspect(raw: Raw) -> Iterator[Converted]:
    v = raw.value
    samples = v.get("samples") if "samples" in v else [v]
    eval_info = _obj(v.get("eval"))
    if not isinstance(samples, list):
        raise ValueError("'samples' is not a list")
    for sample in samples:
        if not isinstance(sample, dict):
            raise ValueError("a sample is not an object")
        steps = messages_to_steps(_inspect_messages(_require(sample, "messages", list)))
        reward, outcome = _score(sample.get("scores"))
        run = eval_info.get("run_id") or eval_info.get("eval_id") or Path(raw.file).stem
        epoch = sample.get("epoch") if isinstance(sample.get("epoch"), int) else None
        yield trajectory(f"inspect:{run}:{sample.get('id')}:{epoch}", "inspect-ai", steps,
                         task_id=f"inspect:{eval_info.get('task', '')}:{sample.get('id')}", trial=epoch,
                         task=text_of(sample.get("input")) if not isinstance(sample.get("input"), list)
                         else _first_user(steps), agent=eval_info.get("model"), domain=eval_info.get("task"),
                         reward=reward, outcome=outcome, metadata={"target": sample.get("target")})


# --- OpenHands evaluation output -----------------------------------------------------------------
def _is_openhands(v: Any) -> bool:
    return isinstance(v, dict) and "instance_id" in v and isinstance(v.get("history"), list)


def _convert_openhands(raw: Raw) -> Iterator[Converted]:
    v = raw.value
    steps: list[dict[str, Any]] = []
    by_id: dict[Any, dict[str, Any]] = {}
    for i, event in enumerate(_require(v, "history", list)):
        if isinstance(event, list) and len(event) == 2:  # older output: [action, observation] pairs
            for part in event:
                _openhands_event(part, steps, by_id, i)
            continue
        _openhands_event(event, steps, by_id, i)
    result = _obj(v.get("test_result"))
    resolved = result.get("resolved")
    if resolved is None and isinstance(result.get("report"), dict):
        resolved = result["report"].get("resolved")
    outcome = "unknown" if resolved is None else ("success" if resolved else "failure")
    metrics = _obj(v.get("metrics"))
    yield trajectory(f"openhands:{v['instance_id']}", "openhands", steps, task_id=f"openhands:{v['instance_id']}",
                     task=v.get("instruction") if isinstance(v.get("instruction"), str) else _first_user(steps),
                     domain="engineering", outcome=outcome, reward=None if resolved is None else float(bool(resolved)),
                     cost_usd=metrics.get("accumulated_cost"), metadata={"error": v.get("error")})


def _openhands_event(e: Any, steps: list[dict[str, Any]], by_id: dict[Any, dict[str, Any]], i: int) -> None:
    if not isinstance(e, dict):
        raise ValueError(f"history[{i}] is not an object")
    args = _obj(e.get("args"))
    if "observation" in e:
        owner = by_id.get(e.get("cause"))
        content = e.get("content") if isinstance(e.get("content"), str) else json.dumps(e.get("content"))
        obs = {"call_id": str(e.get("cause")) if e.get("cause") is not None else None, "content": content}
        extras = _obj(e.get("extras"))
        code = extras.get("exit_code", (extras.get("metadata") or {}).get("exit_code")
                          if isinstance(extras.get("metadata"), dict) else None)
        failed = e.get("observation") == "error" or (isinstance(code, int) and code != 0)
        if owner is None:
            steps.append(new_step(len(steps), "environment", observations=[obs]))
            return
        owner["observations"].append(obs)
        if e.get("observation") == "error" or isinstance(code, int):
            owner.update(check_passed=not failed, label_source="heuristic",
                         check_detail=f"exit code {code}" if isinstance(code, int) else "error observation",
                         error_label="tool_error" if failed else None)
        return
    action = e.get("action")
    source = e.get("source")
    if source == "user" or action in ("system",):
        steps.append(new_step(len(steps), "system" if action == "system" else "user",
                              message=e.get("message") or args.get("content")))
        return
    if action in ("message", "finish") and not args.get("command"):
        steps.append(new_step(len(steps), "agent", message=args.get("content") or e.get("message"),
                              reasoning=args.get("thought") or None))
        by_id[e.get("id")] = steps[-1]
        return
    call_args = {k: val for k, val in args.items() if k not in ("thought",)}
    call = {"id": str(e.get("id")), "name": action, "arguments": json.dumps(call_args, default=str)}
    step = new_step(len(steps), "agent", reasoning=args.get("thought") or None, tool_calls=[call])
    steps.append(step)
    by_id[e.get("id")] = step


FORMATS: list[Format] = [
    Format("atif", "Agent Trajectory Interchange Format (Harbor)", _is_atif, _convert_atif),
    Format("who-and-when", "Who&When failure-attribution logs", _is_who_and_when, _convert_who_and_when),
    Format("openhands", "OpenHands evaluation output (instance_id + history)", _is_openhands, _convert_openhands),
    Format("mini-swe-agent", "mini-swe-agent .traj.json", _is_mini_swe, _convert_mini_swe),
    Format("inspect", "Inspect AI logs (.eval and .json)", _is_inspect, _convert_inspect),
    Format("swe-agent", "SWE-agent .traj", _is_swe_agent, _convert_swe_agent),
    Format("openai-chat", "OpenAI-style chat messages (tau-bench runs, harness JSONL, message lists)", _is_chat,
           _convert_chat),
]
BY_NAME = {f.name: f for f in FORMATS}


def detect(value: Any) -> Format | None:
    """The first format whose content test accepts this record (the order above matters)."""
    for fmt in FORMATS:
        try:
            if fmt.detect(value):
                return fmt
        except (TypeError, AttributeError):
            continue
    return None
