"""Inspect AI logs: `.eval` zip archives (header.json + samples/*.json) and `.json` logs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from horizonlens.errors import RecordError
from horizonlens.ingest.base import Converted, Format, agent_of, count, obj, require, run_id, trajectory
from horizonlens.ingest.chat import messages_to_steps, text_of
from horizonlens.ingest.formats.openai_chat import first_user, reward_outcome
from horizonlens.ingest.readers import Problem, Raw
from horizonlens.ingest.zips import read_members

HEADER = "header.json"


def detect(sample: Any) -> bool:
    """A log (`samples` and `eval`) or one sample (`messages`, `scores` and `epoch`)."""
    return isinstance(sample, dict) and (("samples" in sample and "eval" in sample) or
                                         ("messages" in sample and "scores" in sample and "epoch" in sample))


def read_eval(path: Path) -> Iterator[Raw | Problem]:
    """The samples of a `.eval` archive, each as a one-sample log carrying the archive's eval header."""
    def choose(names: list[str]) -> list[str]:
        samples = sorted(n for n in names if n.startswith("samples/") and n.endswith(".json"))
        return ([HEADER] if HEADER in names else []) + samples

    eval_info: dict[str, Any] = {}
    n_samples = 0
    for rec in read_members(path, choose):
        if isinstance(rec, Problem) or rec.where != HEADER:
            n_samples += 1
        if isinstance(rec, Problem):
            yield rec
        elif rec.where == HEADER:
            eval_info = obj(obj(rec.value).get("eval"))
        else:
            yield Raw({"eval": eval_info, "samples": [rec.value]}, rec.file, rec.where, rec.cuts)
    if n_samples == 0:
        yield Problem(str(path), "file", "no samples/*.json in this archive (not an Inspect AI log?)")


def _score(scores: Any) -> tuple[float | None, str]:
    if not isinstance(scores, dict) or not scores:
        return None, "unknown"
    first = next(iter(scores.values()))
    value = first.get("value") if isinstance(first, dict) else first
    if isinstance(value, str):
        letter = value.strip().upper()
        return {"C": (1.0, "success"), "CORRECT": (1.0, "success"), "I": (0.0, "failure"),
                "INCORRECT": (0.0, "failure"), "P": (0.5, "failure")}.get(letter, (None, "unknown"))
    return reward_outcome(value)


def inspect_id(run: object, sample: object, epoch: object, agent: str | None) -> str:
    """The trajectory id of one Inspect sample: `inspect@<model>:<run>:<sample id>:<epoch>`."""
    return run_id("inspect", agent, run, sample, epoch)


def convert(raw: Raw) -> Iterator[Converted]:
    """One trajectory per sample; `epoch` is the trial, the eval's `model` the agent."""
    v = raw.value
    if not isinstance(v, dict):
        raise RecordError("record is not a JSON object")
    samples = v.get("samples") if "samples" in v else [v]
    eval_info = obj(v.get("eval"))
    if not isinstance(samples, list):
        raise RecordError("'samples' is not a list")
    for sample in samples:
        if not isinstance(sample, dict):
            raise RecordError("a sample is not an object")
        steps = messages_to_steps(require(sample, "messages", list))
        reward, outcome = _score(sample.get("scores"))
        run = eval_info.get("run_id") or eval_info.get("eval_id") or Path(raw.file).stem
        epoch = sample.get("epoch")
        epoch = count(epoch, "epoch") if isinstance(epoch, int) and not isinstance(epoch, bool) else None
        task = eval_info.get("task")
        task = task if isinstance(task, str) else None
        model = agent_of(eval_info.get("model"), raw)
        given = sample.get("input")
        yield trajectory(inspect_id(run, sample.get("id"), epoch, model), "inspect-ai", steps,
                         task_id=f"inspect:{task or ''}:{sample.get('id')}", trial=epoch,
                         task=first_user(steps) if isinstance(given, list) else text_of(given),
                         agent=model, domain=task,
                         reward=reward, outcome=outcome, metadata={"target": sample.get("target")})


FORMAT = Format("inspect", "Inspect AI logs (.eval and .json)", priority=30, detect=detect, convert=convert)
