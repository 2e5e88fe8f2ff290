"""OpenAI-style chat logs: τ-bench runs, Agents-A1-style harness JSONL, and bare message lists.

The lowest priority: many formats carry a `messages` list, and the more specific ones win.

This module owns the τ-bench ids (`tau_bench_id`: `tau-bench:<task_id>:<trial>`) for both of its readers:
`convert` imports the runs, and the AgentRx label reader (`read_agentrx_labels`, `resolve_agentrx_labels`:
`horizonlens annotate import --format agentrx`) finds a run by them and maps AgentRx's message numbers onto
the steps `convert` made of those messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from horizonlens.corpus.actions import ABSENT, differences, parse_arguments
from horizonlens.errors import RecordError
from horizonlens.ingest.base import (
    Converted,
    Format,
    agent_of,
    content_id,
    count,
    number,
    obj,
    require,
    run_id,
    trajectory,
)
from horizonlens.ingest.chat import messages_to_steps
from horizonlens.ingest.label_records import (
    LabelImportReport,
    Pending,
    accept,
    checked,
    identifier,
    located,
    step_number,
    text,
)
from horizonlens.ingest.readers import Problem, Raw, iter_records
from horizonlens.labels.annotations import Label

if TYPE_CHECKING:
    from horizonlens.query.store import CorpusStore

TAU_BENCH = "tau-bench"


def tau_bench_task(task_id: Any) -> str:
    """The corpus task id of a τ-bench task (what AgentRx labels and run-set comparisons pair on)."""
    return f"{TAU_BENCH}:{task_id}"


def tau_bench_id(task_id: Any, trial: Any, agent: str | None = None) -> str:
    """The trajectory id of one τ-bench run: `tau-bench:<task>:<trial>`, or `tau-bench@<agent>:<task>:<trial>`.

    τ-bench numbers runs by task and trial only, so the agent (the model, given with `import --agent`) is what
    keeps two models' runs of one task apart.
    """
    return run_id(TAU_BENCH, agent, task_id, trial)

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
        yield trajectory(run_id("chat", raw.agent, content_id(v)), "openai-chat", steps, task=first_user(steps),
                         agent=raw.agent)
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
        agent = agent_of(v.get("model"), raw)
        yield trajectory(tau_bench_id(v.get("task_id"), v.get("trial"), agent), TAU_BENCH, steps, agent=agent,
                         task_id=tau_bench_task(v.get("task_id")), trial=trial, domain="tool_calling", reward=reward,
                         outcome=outcome, task=instruction if isinstance(instruction, str) else first_user(steps),
                         metadata={"user_id": task.get("user_id"), "reward_info": info.get("reward_info")})
        return
    steps = messages_to_steps(require(v, "messages", list))
    reward, outcome = reward_outcome(v.get("reward", v.get("score")))
    if outcome == "unknown" and isinstance(v.get("correct"), bool):
        reward, outcome = reward_outcome(v["correct"])
    tid = str(v.get("id") or v.get("trajectory_id") or content_id(v))
    meta = {k: v.get(k) for k in ("answer", "prediction", "termination") if k in v}
    if isinstance(v.get("tools"), list) and v["tools"]:  # tool schemas: exports hand them on to trainers
        meta["tools"] = v["tools"]
    question = v.get("question")
    agent = agent_of(v.get("model"), raw)
    yield trajectory(run_id("chat", agent, tid), str(v.get("source") or "openai-chat"), steps,
                     task=question if isinstance(question, str) else first_user(steps),
                     task_id=str(v["task_id"]) if v.get("task_id") is not None else None,
                     agent=agent, reward=reward, outcome=outcome, metadata=meta)


FORMAT = Format("openai-chat", "OpenAI-style chat messages (tau-bench runs, harness JSONL, message lists)",
                priority=10, detect=detect, convert=convert)


# --- AgentRx labels on τ-bench runs -----------------------------------------------------------------------------
def chat_message_steps(steps: list[dict[str, Any]]) -> list[int]:
    """For a trajectory `convert` made: the corpus step of each message, message 1 first.

    `steps`: the trajectory's steps in order, each with `step`, `source` and `observations` (or `n_observations`).
    System, user and agent steps are one message each; an agent step is followed by one message per
    observation (its tool results, which the OpenAI API requires to follow the call); an environment step is
    an orphan tool message.
    """
    out: list[int] = []
    for s in steps:
        out.append(int(s["step"]))
        if s["source"] == "agent":
            n_obs = s.get("n_observations")
            if n_obs is None:
                n_obs = len(s.get("observations") or [])
            out.extend([int(s["step"])] * int(n_obs))
    return out


def read_agentrx_labels(path: Path, source: str) -> Iterator[Pending | str]:
    """AgentRx ground truth (a JSON list of {trajectory_id, failures, root_cause, failure_summary}), record by record.

    The labels carry AgentRx's *message numbers* (from 1) in `step` until `resolve_agentrx_labels` knows the run.
    """
    for raw in iter_records(path):
        if isinstance(raw, Problem):
            yield f"{located(path, raw.where)}: {raw.reason}"
            continue
        where, value = located(path, raw.where), raw.value
        if not isinstance(value, dict) or "trajectory_id" not in value or not isinstance(value.get("failures"), list):
            yield f"{where}: not an AgentRx ground-truth record (needs trajectory_id and a failures list)"
            continue
        try:
            tid = identifier(value["trajectory_id"], "trajectory_id")
            if tid is None:
                raise ValueError("empty trajectory_id")
            labels = checked(_agentrx_labels(value, source))
        except ValueError as exc:
            yield f"{where}: {exc}"
            continue
        trial = value.get("trial")
        yield Pending(where, tid, labels, trial=trial if isinstance(trial, int) and not isinstance(trial, bool)
                      else None)


def _message_number(value: Any, what: str) -> int:
    number = step_number(value, what)
    if number < 1:
        raise ValueError(f"{what} {number} is not a message number (they start at 1)")
    return number


def _agentrx_labels(value: dict[str, Any], source: str) -> list[Label]:
    """Labels with *message numbers* in `step` (mapped to corpus steps once the trajectory is known)."""
    labels = []
    by_id: dict[str, Label] = {}
    for i, failure in enumerate(value["failures"]):
        if not isinstance(failure, dict):
            raise ValueError(f"failures[{i}] is not an object")
        at = f"failures[{i}]"
        label = Label(trajectory_id="", label=text(failure.get("failure_category"), f"{at}.failure_category")
                      or "failure", category="failure", step=_message_number(failure.get("step_number"),
                                                                              f"{at}.step_number"),
                      note=text(failure.get("step_reason"), f"{at}.step_reason"),
                      agent=text(failure.get("failed_agent"), f"{at}.failed_agent"), source=source)
        labels.append(label)
        failure_id = identifier(failure.get("failure_id"), f"failures[{i}].failure_id")
        if failure_id is not None:
            by_id[failure_id] = label
    root = value.get("root_cause")
    if isinstance(root, dict) and root:
        rid = identifier(root.get("failure_id"), "root_cause.failure_id")
        base = by_id.get(rid) if rid is not None else None
        if base is None and root.get("step_number") is not None:  # a root cause stated on its own
            base = Label(trajectory_id="", label=text(root.get("failure_category"), "root_cause.failure_category")
                         or "failure", category="failure",
                         step=_message_number(root.get("step_number"), "root_cause.step_number"),
                         agent=text(root.get("failed_agent"), "root_cause.failed_agent"), source=source)
        if base is None:
            raise ValueError(f"root_cause names failure_id {rid!r}, which is not among the failures")
        reason = next((t for t in (text(root.get(k), f"root_cause.{k}") for k in
                                   ("root_cause_reason", "reason", "step_reason")) if t), None) or base.note
        summary = text(value.get("failure_summary"), "failure_summary")
        note = "\n\n".join(x for x in (reason, f"Summary: {summary}" if summary else None) if x) or None
        labels.append(Label(trajectory_id="", label=base.label, category="root_cause", step=base.step, note=note,
                            agent=base.agent, source=source))
    return labels


def _agentrx_candidates(store: CorpusStore, ids: list[str]) -> dict[str, list[tuple[str, int | None]]]:
    """AgentRx id -> [(trajectory_id, trial)] of the runs it can name: a τ-bench task's runs, or the id itself."""
    task_ids = [tau_bench_task(i) for i in ids]
    rows = store.query(f"SELECT trajectory_id, task_id, trial FROM trajectories WHERE task_id IN "
                       f"({', '.join('?' for _ in task_ids)}) OR trajectory_id IN ({', '.join('?' for _ in ids)}) "
                       f"ORDER BY trajectory_id", [*task_ids, *ids]).to_pylist()
    out: dict[str, list[tuple[str, int | None]]] = {i: [] for i in ids}
    prefix = tau_bench_task("")
    for r in rows:
        if r["trajectory_id"] in out:
            out[r["trajectory_id"]].append((r["trajectory_id"], r["trial"]))
        task = r["task_id"] or ""
        if task.startswith(prefix) and task[len(prefix):] in out and r["trajectory_id"] not in out:
            out[task[len(prefix):]].append((r["trajectory_id"], r["trial"]))
    return out


def _message_steps(store: CorpusStore, trajectory_id: str) -> list[int]:
    rows = store.query("SELECT step, source, len(observations) AS n_observations FROM steps WHERE trajectory_id = ? "
                       "ORDER BY step", [trajectory_id]).to_pylist()
    return chat_message_steps(rows)


def resolve_agentrx_labels(store: CorpusStore, pending: list[Pending], report: LabelImportReport) -> list[Label]:
    """Each record's labels on the run it names, its message numbers (1..messages) mapped to corpus steps."""
    candidates = _agentrx_candidates(store, sorted({p.source_id for p in pending}))
    out = []
    for p in pending:
        rid, trial = p.source_id, p.trial
        runs = candidates.get(rid, [])
        if trial is not None:
            runs = [r for r in runs if r[1] == trial]
        if not runs:
            report.unmatched.append(f"{rid} (no trajectory with task_id {tau_bench_task(rid)}"
                                    f"{f' and trial {trial}' if trial is not None else ''})")
            continue
        if len(runs) > 1:
            report.unmatched.append(f"{rid} ({len(runs)} trials in the corpus; give the record a 'trial' to pick one)")
            continue
        tid = runs[0][0]
        messages = _message_steps(store, tid)
        mapped = []
        for x in p.labels:
            number = x.step if x.step is not None else 0  # read_agentrx_labels gives every label a message number
            if not 1 <= number <= len(messages):
                report.problems.append(f"{p.where} ({rid}): step_number {number} is beyond the {len(messages)} "
                                       f"messages of {tid}")
                break
            mapped.append(Label(trajectory_id=tid, label=x.label, category=x.category, step=messages[number - 1],
                                note=x.note, agent=x.agent, source=x.source))
        else:
            out += accept(p, mapped, report)
    return out
