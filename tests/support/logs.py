"""Small agent logs written by tests: τ-bench-shaped runs (the importer's openai-chat format) as JSON Lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def tau_run(task: int, trial: int = 0, reward: float = 1.0, words: str = "book a flight") -> dict[str, Any]:
    """One τ-bench run: its trajectory id in the corpus is `tau-bench:<task>:<trial>`."""
    call = {"name": "search_flights", "arguments": json.dumps({"task": task})}
    return {"task_id": task, "trial": trial, "reward": reward,
            "info": {"task": {"instruction": f"task {task}: {words}"}},
            "traj": [{"role": "system", "content": "You are an airline agent."},
                     {"role": "user", "content": f"Please {words} (task {task})."},
                     {"role": "assistant", "content": None,
                      "tool_calls": [{"id": f"c{task}", "type": "function", "function": call}]},
                     {"role": "tool", "tool_call_id": f"c{task}", "content": "HL401 09:00"},
                     {"role": "assistant", "content": f"Booked HL401 for task {task}."}]}


def line(record: dict[str, Any]) -> bytes:
    """A record as one JSON Lines line (with its newline)."""
    return (json.dumps(record) + "\n").encode()


def append(path: Path, data: bytes) -> None:
    """Append bytes the way a writer does: open, write, close (a half line stays half until the next append)."""
    with path.open("ab") as fh:
        fh.write(data)
        fh.flush()
