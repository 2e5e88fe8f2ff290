"""Six simulated worlds, one per Agents-A1-style teacher domain; every tool really executes.

- search:      a document collection with keyword search; gather one fact per entity, then answer.
- engineering: a toy repository of small functions with unit tests that run; fix the bugs.
- science:     unit conversion and an arithmetic evaluator; compute quantities and report a total.
- instruction: a document whose sections must meet constraints checked by a real checker.
- tool_calling: a stateful airline booking database (tau-bench-like); carry out customer requests.
- general:     a calendar with attendees and a message outbox; schedule meetings and notify people.

Each world is a module named after its domain; `WORLDS` maps a domain to its world.
"""

from __future__ import annotations

import random
from typing import Callable

from horizonlens.sample.world import Environment
from horizonlens.sample.worlds.engineering import EngineeringWorld
from horizonlens.sample.worlds.general import CalendarWorld
from horizonlens.sample.worlds.instruction import InstructionWorld
from horizonlens.sample.worlds.science import ScienceWorld
from horizonlens.sample.worlds.search import SearchWorld
from horizonlens.sample.worlds.tool_calling import BookingWorld

# domain -> the world of one task, built from (rng, number of goals)
WORLDS: dict[str, Callable[[random.Random, int], Environment]] = {
    "search": SearchWorld,
    "engineering": EngineeringWorld,
    "science": ScienceWorld,
    "instruction": InstructionWorld,
    "tool_calling": BookingWorld,
    "general": CalendarWorld,
}
