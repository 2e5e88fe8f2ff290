"""The words sample agents write: reasoning per action and repair notes."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from horizonlens.sample.world import Call, Environment, Subgoal

_OPENERS = ["Next, I need to {intent}.", "Moving on: I want to {intent}.", "The plan now is to {intent}.",
            "Item {n}: {intent}.", "Continuing with the task, I should {intent}."]
_WHY = {
    "search": "I'll search the collection with a focused query: {query}.",
    "open_document": "The top hit looks right, so I'll open {doc_id} and read it.",
    "read_file": "First I'll read {path} to see the implementation.",
    "edit_file": "The expression in the return statement is wrong for the tested values; I'll replace it.",
    "run_tests": "Let me run the tests for {path} to confirm the fix.",
    "convert": "Converting {value} {from_unit} to {to_unit} so every quantity is in SI units.",
    "calc": "Now the kinetic energy: E = 1/2 m v^2, so I evaluate {expression}.",
    "write_section": "Drafting section '{title}' with its keyword and within the word limit.",
    "check_section": "Checking '{title}' against the constraints before moving on.",
    "search_flights": "Searching flights {origin} to {destination} on {date}.",
    "book_reservation": "Booking {flight_id} in {cabin} for {user_id}; it is the cheapest option listed.",
    "cancel_reservation": "Cancelling {reservation_id}.",
    "find_free_slot": "Looking up the earliest free hour on {day}.",
    "add_event": "Adding the meeting on {day} at hour {hour}.",
    "send_message": "Letting {to} know the time.",
    "delete_event": "Removing the event on {day} at hour {hour}.",
}


def reasoning_for(env: "Environment", goal: "Subgoal", call: "Call", index: int, rng: random.Random) -> str:
    """A short chain of thought for one action, in the agent's voice."""
    why = _WHY.get(call.name, "Calling {name}.").format(name=call.name, **{k: v for k, v in call.args.items()})
    if index == 0:
        n = env.subgoals.index(goal) + 1
        return rng.choice(_OPENERS).format(intent=goal.intent, n=f"{n}/{len(env.subgoals)}") + " " + why
    return why


def repair_reasoning(observation: str | None, failed_call: "Call | None", call: "Call") -> str:
    """What the agent says when it noticed a failed check (its call and what it saw) and makes `call` to repair it."""
    first = (observation or "").strip().splitlines()
    seen = first[0][:160] if first else "an unexpected result"
    undoing_edit = (call.name == "edit_file" and failed_call is not None
                    and call.args.get("old") == failed_call.args.get("new"))
    if call.name in ("cancel_reservation", "delete_event") or undoing_edit:
        return f"Wait: the last result ('{seen}') is not what the task needs. I'll undo that action first."
    return f"That was wrong (I got: '{seen}'). Retrying the step with the correct arguments."
