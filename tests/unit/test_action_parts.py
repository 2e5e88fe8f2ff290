"""An agent action split into reasoning, message and tool calls, as the Horizon Lens template writes them."""

from __future__ import annotations

import json

from horizonlens.model.render import ActionParts, pieces, recorded_action, split_action


def test_split_generated_text() -> None:
    call = '{"name": "search", "arguments": {"q": "x"}}'
    text = f"look it up\n</think>\nOn it.\n<tool_call>{call}</tool_call>\n<|end|>\n<|tool|>\nmore"
    assert split_action(text, in_think=True) == ActionParts("look it up", "On it.", [call])
    assert split_action("<think>\nhm\n</think>\n<tool_call>{\"na", in_think=False) == ActionParts("hm", None,
                                                                                                 ['{"na'])
    assert split_action("plain answer", in_think=False) == ActionParts(None, "plain answer", [])
    assert split_action("still thinking", in_think=True) == ActionParts("still thinking", None, [])
    assert split_action("", in_think=True) == ActionParts()
    two = "<tool_call>a</tool_call>between<tool_call>b</tool_call>"
    assert split_action(two) == ActionParts(None, "between", ["a", "b"])


def test_recorded_step_round_trips_through_the_template() -> None:
    step = {"step": 3, "source": "agent", "reasoning": "pick HL401", "message": "Booking.",
            "tool_calls": [{"id": "c", "name": "book", "arguments": json.dumps({"flight_id": "HL401"})}],
            "observations": []}
    parts = recorded_action(step)
    assert parts == ActionParts("pick HL401", "Booking.", ['{"name": "book", "arguments": {"flight_id": "HL401"}}'])
    # what the template writes for the step, split again, gives the same parts
    text = "".join(p.text for p in pieces([step])).split("<|assistant|>\n", 1)[1]
    assert split_action(text) == parts
