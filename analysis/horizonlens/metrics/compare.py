"""Two trajectories side by side: aligned by step, with the first step where their actions diverge."""

from __future__ import annotations

import json

import pandas as pd

from horizonlens.query.store import CorpusStore


def action_text(row: dict) -> str:
    """A step's action as one comparable string: tool calls with canonical JSON args, else the message."""
    calls = row.get("tool_calls") or []
    if calls:
        parts = []
        for c in calls:
            try:
                args = json.dumps(json.loads(c.get("arguments") or "{}"), sort_keys=True, ensure_ascii=False)
            except (json.JSONDecodeError, TypeError):
                args = c.get("arguments") or ""
            parts.append(f"{c.get('name')}({args})")
        return "; ".join(parts)
    return (row.get("message") or "").strip()


def align(store: CorpusStore, a: str, b: str, max_steps: int = 2000) -> tuple[pd.DataFrame, int | None]:
    """Rows by step index for both runs and the first step whose agent action differs (None if none)."""
    ra = store.steps(a, 0, max_steps).to_pylist()
    rb = store.steps(b, 0, max_steps).to_pylist()
    rows, first = [], None
    for i in range(max(len(ra), len(rb))):
        x = ra[i] if i < len(ra) else None
        y = rb[i] if i < len(rb) else None
        act_x = action_text(x) if x else None
        act_y = action_text(y) if y else None
        agent = (x and x["source"] == "agent") or (y and y["source"] == "agent")
        same = act_x == act_y
        if first is None and agent and not same:
            first = i
        rows.append({"step": i, "source_a": x["source"] if x else None, "action_a": act_x,
                     "check_a": x["check_passed"] if x else None, "source_b": y["source"] if y else None,
                     "action_b": act_y, "check_b": y["check_passed"] if y else None, "same_action": same})
    return pd.DataFrame(rows), first
