"""Shared test data: paths, hostile strings, hand-built corpus rows, and a small τ-bench record."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from horizonlens.corpus.files import new_manifest, write_corpus
from horizonlens.corpus.schema import STEPS, TRAJECTORIES

REPO = Path(__file__).resolve().parents[2]
SAMPLE_CORPUS = REPO / "sample_data" / "corpus"  # the bundled sample: part of the checkout, never skipped


def _shared_datasets() -> Path:
    """The real datasets: $HORIZONLENS_DATASETS, else ../shared/datasets beside the checkout or one level up.

    A git worktree sits one folder deeper than the main checkout, so both places are tried; tests that
    need a dataset skip cleanly when none has it.
    """
    env = os.environ.get("HORIZONLENS_DATASETS")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "datasets", REPO.parent.parent / "shared" / "datasets"]
    return next((c for c in candidates if c.is_dir()), candidates[0])


SHARED_DATASETS = _shared_datasets()
# A host no browser can reach (.invalid never resolves): any request for it means untrusted text became markup.
TINY_RUN = "search-00000-a1-student-ckpt-4k-t0"  # a run of the `tiny_corpus` fixture
PLANTED_HOST = "planted.invalid"
MARKDOWN_IMAGE = f"![pwn](http://{PLANTED_HOST}/pwn.png) [click](javascript:alert(1))"
TOOL_IMAGE = f"![tool](http://{PLANTED_HOST}/tool.png)"  # a tool's name: rendered in a label on the Trajectory page
BARE_URLS = f"see https://{PLANTED_HOST}/bare, www.{PLANTED_HOST}/www and leak@{PLANTED_HOST}"  # GFM autolinks
HTML_LINK = f"<a href='http://{PLANTED_HOST}/html'>x</a><b>bold</b>"
HOSTILE = "<script>window.__pwned = 1</script><img src=x onerror=alert(1)> '; DROP TABLE steps; -- %_\\ ünïcødé 漢字 🚀"


def step_row(tid: str, step: int, source: str = "agent", check: bool | None = True, **kw: object) -> dict:
    row = {name: None for name in STEPS.names}
    row.update(trajectory_id=tid, step=step, source=source, check_passed=check, tool_calls=[], observations=[],
               n_tokens=10, label_source="verifier" if check is not None else None)
    row.update(kw)
    return row


def traj_row(tid: str, n_steps: int, outcome: str = "success", **kw: object) -> dict:
    row = {name: None for name in TRAJECTORIES.names}
    row.update(trajectory_id=tid, task_id=tid.split("-t")[0], trial=0, source="test", domain="search", agent="a",
               teacher="t", task=f"task {tid}", outcome=outcome, reward=1.0 if outcome == "success" else 0.0,
               n_steps=n_steps, n_tokens=10 * n_steps, n_failed_checks=0,
               started_at=datetime(2026, 1, 1, tzinfo=timezone.utc), metadata=json.dumps({}))
    row.update(kw)
    return row


def make_corpus(root: Path, trajectories: list[dict], steps: list[dict]) -> Path:
    """Write a hand-built corpus (rows as dicts, missing columns null)."""
    write_corpus(root, pa.Table.from_pylist(trajectories, schema=TRAJECTORIES),
                 pa.Table.from_pylist(steps, schema=STEPS), new_manifest(["test"]))
    return root


# One τ-bench run in OpenAI chat form: a failed tool call, a retry, an answer.
TAU = {"task_id": 7, "trial": 2, "reward": 1.0, "info": {"task": {"instruction": "Book it", "user_id": "u1"}},
       "traj": [{"role": "system", "content": "policy"}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "get_user", "arguments": "{\"id\": 1}"}}]},
                {"role": "tool", "tool_call_id": "c1", "name": "get_user", "content": "Error: user not found"},
                {"role": "assistant", "content": None, "reasoning_content": "retry", "tool_calls": [
                    {"id": "c2", "type": "function", "function": {"name": "get_user", "arguments": "{\"id\": 2}"}}]},
                {"role": "tool", "tool_call_id": "c2", "content": "{\"name\": \"x\"}"},
                {"role": "assistant", "content": "Done."}]}
