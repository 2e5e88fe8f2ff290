"""Who&When failure-attribution logs: a multi-agent history with the annotated decisive mistake."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from horizonlens.corpus.actions import expected_given, show_value
from horizonlens.errors import RecordError
from horizonlens.ingest.base import Converted, Format, count, last_line, new_step, require, trajectory
from horizonlens.ingest.chat import text_of
from horizonlens.ingest.readers import Raw

EXIT_CODE = re.compile(r"exitcode:\s*(-?\d{1,18})")


def detect(sample: Any) -> bool:
    """A `history` with a `mistake_step` or a `mistake_agent`."""
    return isinstance(sample, dict) and "history" in sample and ("mistake_step" in sample or "mistake_agent" in sample)


def _bool(x: Any) -> bool | None:
    if isinstance(x, bool):
        return x
    if isinstance(x, str) and x.strip().lower() in ("true", "false"):
        return x.strip().lower() == "true"
    return None


def convert(raw: Raw) -> Iterator[Converted]:
    """Step 0 is the question; `history[i]` becomes step i + 1; code execution turns carry a check."""
    v = raw.value
    history = require(v, "history", list)
    mistake = count(v.get("mistake_step"), "mistake_step")
    question = v.get("question") if isinstance(v.get("question"), str) else None
    steps = [new_step(0, "user", message=question)]
    for i, m in enumerate(history):  # history[i] becomes step i + 1 (step 0 is the question)
        if not isinstance(m, dict):
            raise RecordError(f"history[{i}] is not an object")
        text = text_of(m.get("content"))
        name = m.get("name") or m.get("role")
        name = name if isinstance(name, str) else None
        terminal = "terminal" in str(name).lower() or str(text or "").startswith("exitcode:")
        step = new_step(len(steps), "environment" if terminal else "agent", message=None if terminal else text,
                        observations=[{"call_id": None, "content": text}] if terminal else [])
        exit_code = EXIT_CODE.match(text or "")
        if terminal and exit_code:
            code = int(exit_code.group(1))
            output = f" — output ends {show_value(last_line(text or ''))}" if code else ""
            step.update(check_passed=code == 0, check_detail=f"exit code: {expected_given(0, code)}{output}",
                        label_source="heuristic", error_label=None if code == 0 else "execution_failed")
        step["is_decisive_error"] = (i == mistake) if mistake is not None else None
        if i == mistake:
            step.update(label_source="annotation", error_label=step["error_label"] or "decisive_mistake",
                        check_detail=str(v.get("mistake_reason") or "")[:500] or step["check_detail"])
        if name and step["source"] == "agent" and step["message"] is not None:
            step["message"] = f"[{name}] {step['message']}"  # the speaking agent goes into the message header
        steps.append(step)
    if mistake is not None and not 0 <= mistake < len(history):
        raise RecordError(f"mistake_step {mistake} is outside the history (0..{len(history) - 1})")
    correct = _bool(v.get("is_correct"))
    if correct is None:
        correct = _bool(v.get("is_corrected"))
    qid = v.get("question_ID") or Path(raw.file).stem
    yield trajectory(f"who-and-when:{Path(raw.file).parent.name}:{Path(raw.file).stem}", "who-and-when", steps,
                     task=question, task_id=f"who-and-when:{qid}", domain="general", agent="multi-agent",
                     outcome="unknown" if correct is None else ("success" if correct else "failure"),
                     reward=None if correct is None else float(correct),
                     metadata={"mistake_agent": v.get("mistake_agent"), "mistake_step": mistake,
                               "mistake_reason": v.get("mistake_reason"), "ground_truth": v.get("ground_truth"),
                               "level": v.get("level")})


FORMAT = Format("who-and-when", "Who&When failure-attribution logs", priority=60, detect=detect, convert=convert)
