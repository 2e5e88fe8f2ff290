"""Who&When failure-attribution logs: a multi-agent history with the annotated decisive mistake.

This module owns the format's trajectory ids (`trajectory_ids`) for both of its readers: `convert` imports
a log as a trajectory, and `read_labels` / `resolve_labels` put the log's annotated mistake on that
trajectory's step as a label (`horizonlens annotate import --format who-and-when`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from horizonlens.corpus.actions import expected_given, show_value
from horizonlens.errors import RecordError
from horizonlens.ingest.base import Converted, Format, count, last_line, new_step, require, trajectory
from horizonlens.ingest.chat import text_of
from horizonlens.ingest.label_records import (
    LabelImportReport,
    Pending,
    accept,
    checked,
    located,
    step_counts,
    step_number,
    text,
)
from horizonlens.ingest.readers import Problem, Raw, iter_records
from horizonlens.labels.annotations import Label

if TYPE_CHECKING:
    from horizonlens.query.store import CorpusStore

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
    yield trajectory(trajectory_ids(Path(raw.file))[0], "who-and-when", steps,
                     task=question, task_id=f"who-and-when:{qid}", domain="general", agent="multi-agent",
                     outcome="unknown" if correct is None else ("success" if correct else "failure"),
                     reward=None if correct is None else float(correct),
                     metadata={"mistake_agent": v.get("mistake_agent"), "mistake_step": mistake,
                               "mistake_reason": v.get("mistake_reason"), "ground_truth": v.get("ground_truth"),
                               "level": v.get("level")})


FORMAT = Format("who-and-when", "Who&When failure-attribution logs", priority=60, detect=detect, convert=convert)


# --- ids -------------------------------------------------------------------------------------------------------
def trajectory_ids(path: Path) -> list[str]:
    """The trajectory ids the run logged in `path` may have been imported under, the one `convert` gives first.

    A run is named `who-and-when:<folder>:<file stem>` after the path it was imported from, so `1.json`
    imported from inside its folder is `who-and-when::1`: the folder as given, as found on disk, and none
    are tried in that order (the step count then confirms the run).
    """
    ids = [f"who-and-when:{path.parent.name}:{path.stem}", f"who-and-when:{path.resolve().parent.name}:{path.stem}",
           f"who-and-when::{path.stem}"]
    return list(dict.fromkeys(ids))


# --- labels ----------------------------------------------------------------------------------------------------
def read_labels(path: Path, source: str) -> Iterator[Pending | str]:
    """The annotated decisive mistake of each log in `path`, as a label on step `mistake_step + 1`.

    `mistake_step` is a 0-based index into `history`, and `convert` makes step 0 the question and history[i]
    step i + 1. The run must have len(history) + 1 steps, or the file is not the one that was imported.
    """
    for raw in iter_records(path):
        if isinstance(raw, Problem):
            yield f"{located(path, raw.where)}: {raw.reason}"
            continue
        where = located(path, raw.where)
        value = raw.value
        if not isinstance(value, dict) or "history" not in value or "mistake_step" not in value:
            yield f"{where}: not a Who&When log (needs history and mistake_step)"
            continue
        history = value["history"]
        if not isinstance(history, list):
            yield f"{where}: history is not a list"
            continue
        ids = trajectory_ids(path)
        try:
            mistake = step_number(value.get("mistake_step"), "mistake_step")
            if not 0 <= mistake < len(history):
                raise ValueError(f"mistake_step {mistake} is outside the history (0..{len(history) - 1})")
            label = Label(trajectory_id=ids[0], label="decisive mistake", category="decisive", step=mistake + 1,
                          note=text(value.get("mistake_reason"), "mistake_reason"),
                          agent=text(value.get("mistake_agent"), "mistake_agent"), source=source)
            yield Pending(where, ids[0], checked([label]), n_steps=len(history) + 1, ids=ids)
        except ValueError as exc:
            yield f"{where}: {exc}"


def resolve_labels(store: CorpusStore, pending: list[Pending], report: LabelImportReport) -> list[Label]:
    """Each log's label on the trajectory imported from it (the first of its ids with the right step count)."""
    steps = step_counts(store, [i for p in pending for i in p.ids])
    out = []
    for p in pending:
        tid, expected = next((i for i in p.ids if i in steps), p.source_id), p.n_steps
        if tid not in steps:
            report.unmatched.append(f"{tid} (no such trajectory; import {p.where} with --format who-and-when first)")
        elif steps[tid] != expected:
            report.unmatched.append(f"{tid} (the corpus has {steps[tid]} steps, {p.where} has {expected}: "
                                    "not the run that was imported)")
        else:
            out += accept(p, [Label(trajectory_id=tid, label=x.label, category=x.category, step=x.step, note=x.note,
                                    agent=x.agent, source=x.source) for x in p.labels], report)
    return out
