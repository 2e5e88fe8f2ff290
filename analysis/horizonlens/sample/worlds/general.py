"""The "general" world: a calendar with attendees and a message outbox; schedule meetings and notify people."""

from __future__ import annotations

import random
from typing import Any, Callable

from horizonlens.sample.world import Call, Environment, Result, Subgoal, ToolSpec, fixed, make_name


class CalendarWorld(Environment):
    """General agentic work: schedule meetings into free slots and notify each attendee."""

    MUTATING = frozenset({"add_event", "delete_event", "send_message"})

    DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri"]

    def __init__(self, rng: random.Random, n_goals: int):
        super().__init__(rng=rng, domain="general")
        self.events: dict[str, list[list[Any]]] = {d: [] for d in self.DAYS}
        self.outbox: list[list[str]] = []
        for d in self.DAYS:  # pre-existing busy blocks
            for h in rng.sample(range(9, 17), k=rng.randint(1, 4)):
                self.events[d].append([h, 1, "busy"])
        self.meetings: list[tuple[str, str, str]] = []  # (title, attendee, day)
        for i in range(n_goals):
            who = make_name(rng)
            day = rng.choice(self.DAYS)
            self.meetings.append((f"sync with {who} #{i + 1}", who, day))
        self.instruction = ("Schedule a one-hour meeting for each request in the earliest free slot of its day "
                            "(09:00-17:00), then message the attendee the time: "
                            + "; ".join(f"{t} on {d}" for t, _, d in self.meetings) + ".")
        self.tools = [
            ToolSpec("find_free_slot", "earliest free hour on a day", {"day": "str"}),
            ToolSpec("add_event", "add an event", {"day": "str", "hour": "int", "title": "str"}),
            ToolSpec("delete_event", "remove an event", {"day": "str", "hour": "int"}),
            ToolSpec("send_message", "send a message", {"to": "str", "text": "str"}),
        ]
        for title, who, day in self.meetings:
            self.subgoals.append(Subgoal(
                key=title, intent=f"schedule '{title}' on {day}",
                builders=[fixed("find_free_slot", {"day": day}), _add_meeting(day, title),
                          _notify_attendee(who, title, day)],
                truth=True,
            ))

    def state(self) -> Any:
        """The calendar and the outbox of sent messages."""
        return {"events": self.events, "outbox": self.outbox}

    def tool_find_free_slot(self, day: str) -> Result:
        """Tool: the earliest free hour of a day between 09:00 and 17:00 (the value), if any."""
        if day not in self.events:
            return Result(f"Error: unknown day '{day}'", error=True)
        busy = {h for h, _, _ in self.events[day]}
        free = next((h for h in range(9, 17) if h not in busy), None)
        if free is None:
            return Result(f"No free slot on {day}.", value=None)
        return Result(f"Earliest free slot on {day}: {free:02d}:00", value=free)

    def tool_add_event(self, day: str, hour: Any, title: str) -> Result:
        """Tool: add a one-hour event; an error on a conflict or an hour that is not an integer."""
        if day not in self.events or not isinstance(hour, int):
            return Result(f"Error: invalid day or hour ({day}, {hour})", error=True)
        if any(h == hour for h, _, _ in self.events[day]):
            return Result(f"Error: conflict at {hour:02d}:00 on {day}", error=True)
        self.events[day].append([hour, 1, title])
        self.events[day].sort()
        return Result(f"Added '{title}' on {day} at {hour:02d}:00.", value=f"{day} {hour:02d}:00")

    def tool_delete_event(self, day: str, hour: int) -> Result:
        """Tool: delete the events at an hour (pre-existing busy blocks stay)."""
        before = len(self.events.get(day, []))
        self.events[day] = [e for e in self.events.get(day, []) if e[0] != hour or e[2] == "busy"]
        if len(self.events[day]) == before:
            return Result(f"Error: nothing to delete at {hour} on {day}", error=True)
        return Result(f"Deleted event at {hour:02d}:00 on {day}.", value=True)

    def tool_send_message(self, to: str, text: str) -> Result:
        """Tool: append a message to the outbox."""
        self.outbox.append([to, text])
        return Result(f"Message sent to {to}.", value=True)

    def corrupt(self, call: Call, rng: random.Random) -> tuple[Call, str]:
        """A meeting at a later hour (`wrong_time`), a message to someone else, or a slot on another day.

        The error categories are `wrong_time`, `wrong_recipient` and `wrong_day`.
        """
        if call.name == "add_event" and isinstance(call.args["hour"], int):
            return Call("add_event", {**call.args, "hour": call.args["hour"] + rng.choice([1, 2, 3])}), "wrong_time"
        if call.name == "send_message":
            return Call("send_message", {**call.args, "to": make_name(rng)}), "wrong_recipient"
        other_day = rng.choice([d for d in self.DAYS if d != call.args["day"]])
        return Call("find_free_slot", {"day": other_day}), "wrong_day"

    def repair_calls(self, wrong: Call, right: Call, wrong_result: Result) -> list[Call]:
        """Delete a meeting added at the wrong hour."""
        if wrong.name == "add_event" and not wrong_result.error:
            return [Call("delete_event", {"day": wrong.args["day"], "hour": wrong.args["hour"]})]
        return []

    def final_call(self, beliefs: dict[str, Any]) -> Call:
        """Tell the requester that every meeting is scheduled."""
        return Call("send_message", {"to": "requester", "text": f"All {len(self.meetings)} meetings are scheduled."})

    def reward(self, final: Result) -> float:
        """Fraction of meetings booked once, in the earliest free slot, with the attendee told the time."""
        ok = 0
        for title, who, day in self.meetings:
            ev = [e for e in self.events[day] if e[2] == title]
            if len(ev) == 1:
                hour = ev[0][0]
                earlier_free = [h for h in range(9, hour) if not any(e[0] == h for e in self.events[day])]
                told = [who, f"Booked '{title}' on {day} at {hour:02d}:00."] in self.outbox
                ok += (not earlier_free) and told
        return ok / len(self.meetings)


def _add_meeting(day: str, title: str) -> Callable[[list[Any]], Call]:
    """The chain link that books a meeting at the free hour the previous call found."""
    return lambda values: Call("add_event", {"day": day, "hour": values[0], "title": title})


def _notify_attendee(who: str, title: str, day: str) -> Callable[[list[Any]], Call]:
    """The chain link that messages the attendee the time of the meeting just booked."""
    return lambda values: Call("send_message", {"to": who, "text": f"Booked '{title}' on {day} at {values[0]:02d}:00."})
