"""A hand-made failed τ-bench run whose checks all pass: it cancelled reservation B where the task expected A."""

from __future__ import annotations

import json

from tests.support.corpora import HOSTILE, MARKDOWN_IMAGE


def _call(cid: str, name: str, args: dict) -> dict:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def wrong_cancellation(task_id: int = 3) -> dict:
    """τ-bench's run format; the reward info expects get_user(u1) then cancel_reservation(A); the agent cancels B.

    Its steps: 0 system, 1 user (hostile text), 2 get_user (matched), 3 cancel_reservation (wrong argument), 4 a
    closing message. The metadata carries a markdown image, which must stay text.
    """
    return {"task_id": task_id, "trial": 0, "reward": 0.0,
            "info": {"task": {"instruction": "Cancel my trip", "user_id": "u1"},
                     "reward_info": {"reward": 0.0, "info": {"r_actions": 0.0, "note": MARKDOWN_IMAGE},
                                     "actions": [{"name": "get_user", "kwargs": {"id": "u1"}},
                                                 {"name": "cancel_reservation", "kwargs": {"reservation_id": "A"}}]}},
            "traj": [{"role": "system", "content": "policy"}, {"role": "user", "content": HOSTILE},
                     {"role": "assistant", "content": None, "tool_calls": [_call("c1", "get_user", {"id": "u1"})]},
                     {"role": "tool", "tool_call_id": "c1", "content": "{\"reservations\": [\"A\", \"B\"]}"},
                     {"role": "assistant", "content": None,
                      "tool_calls": [_call("c2", "cancel_reservation", {"reservation_id": "B"})]},
                     {"role": "tool", "tool_call_id": "c2", "content": "{\"status\": \"cancelled\"}"},
                     {"role": "assistant", "content": "Done."}]}
