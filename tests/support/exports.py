"""Shared test data for exports and bundles: a hand-built corpus whose every export row can be computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.corpora import HOSTILE, make_corpus, step_row, traj_row

SECRET_KEY = "sk-proj-" + "A1b2C3d4" * 4  # the shape of an OpenAI key
EMAIL = "alice.smith@example.org"
TOOLS = [{"type": "function", "function": {"name": "search", "description": "Search the docs",
                                           "parameters": {"type": "object", "properties": {"q": {"type": "string"}},
                                                          "required": ["q"]}}}]
# A chat template in the manner of Qwen's: tools, reasoning_content, tool calls, tool results. It refuses a second
# system message, so a run with one cannot be rendered (the per-run problem the export must report).
CHAT_TEMPLATE = (
    "{%- if tools %}<|system|>\n# Tools\n{%- for tool in tools %}\n{{ tool | tojson }}{%- endfor %}\n{% endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'system' %}{%- if not loop.first %}"
    "{{ raise_exception('a system message must come first') }}{%- endif %}<|system|>\n{{ message.content }}\n"
    "{%- elif message.role == 'user' %}<|user|>\n{{ message.content }}\n"
    "{%- elif message.role == 'assistant' %}<|assistant|>\n"
    "{%- if message.reasoning_content %}<think>\n{{ message.reasoning_content }}\n</think>\n{%- endif %}"
    "{{ message.content }}"
    "{%- if message.tool_calls %}{%- for tc in message.tool_calls %}<tool_call>{\"name\": \"{{ tc.function.name }}\", "
    "\"arguments\": {{ tc.function.arguments }}}</tool_call>{%- endfor %}{%- endif %}<|end|>\n"
    "{%- elif message.role == 'tool' %}<|tool|>\n{{ message.content }}\n{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}<|assistant|>\n{%- endif %}")


def export_corpus(root: Path) -> Path:
    """Six runs over three tasks, each built to exercise one export option.

    - ok-t0: success, 4 steps, tools in its metadata, knowledge on its agent step, a secret and an e-mail;
    - ok-t1: failure of the same task, first failed check at step 2, decisive step 3;
    - dup-t0 / dup-t1: the same conversation twice (dedupe), both successes, different step counts;
    - env-t0: an environment step with text and an observation, a call without an id, hostile text;
    - zero-t0: fails its check at step 0 (nothing is left before the cut).
    """
    trajs = [
        traj_row("ok-t0", 4, task_id="task-ok", metadata=json.dumps({"tools": TOOLS}), teacher="teach-a"),
        traj_row("ok-t1", 5, outcome="failure", task_id="task-ok", n_failed_checks=1, first_failed_step=2),
        traj_row("dup-t0", 3, task_id="task-dup", reward=0.5),
        traj_row("dup-t1", 3, task_id="task-dup"),
        traj_row("env-t0", 3, task_id="task-env", domain="coding", outcome="unknown", reward=None),
        traj_row("zero-t0", 1, outcome="failure", task_id="task-zero", n_failed_checks=1, first_failed_step=0),
    ]
    call = [{"id": "c1", "name": "search", "arguments": json.dumps({"q": "refund policy"})}]
    steps = [
        step_row("ok-t0", 0, "system", None, message="You are a helpful agent."),
        step_row("ok-t0", 1, "user", None, message=f"Find the refund policy. My key is {SECRET_KEY}, mail {EMAIL}"),
        step_row("ok-t0", 2, reasoning="I should search.", knowledge="Refunds take 5 days.", tool_calls=call,
                 observations=[{"call_id": "c1", "content": "Refund policy: 30 days."}]),
        step_row("ok-t0", 3, message="Refunds are accepted for 30 days."),
        step_row("ok-t1", 0, "system", None, message="You are a helpful agent."),
        step_row("ok-t1", 1, "user", None, message="Find the refund policy."),
        step_row("ok-t1", 2, check=False, tool_calls=call, observations=[{"call_id": "c1", "content": "Error: down"}]),
        step_row("ok-t1", 3, check=False, is_decisive_error=True, message="I give up."),
        step_row("ok-t1", 4, message="Bye."),
        *[step_row(tid, i, src, None if src == "user" else True, message=text)
          for tid in ("dup-t0", "dup-t1")
          for i, (src, text) in enumerate([("user", "Say hi."), ("agent", "Hi."), ("agent", "Done.")])],
        step_row("env-t0", 0, "user", None, message=HOSTILE),
        step_row("env-t0", 1, tool_calls=[{"id": None, "name": "run", "arguments": "{\"cmd\": \"ls\"}"}],
                 observations=[{"call_id": None, "content": "a.txt"}]),
        step_row("env-t0", 2, "environment", None, message="The container restarted.",
                 observations=[{"call_id": None, "content": "exit code 137"}]),
        step_row("zero-t0", 0, check=False, message="Oops."),
    ]
    return make_corpus(root, trajs, steps)
