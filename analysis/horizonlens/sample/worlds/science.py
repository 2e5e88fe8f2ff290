"""The "science" world: unit conversion and an arithmetic evaluator; compute quantities and report a total."""

from __future__ import annotations

import random
from typing import Any

from horizonlens.sample.world import Call, Environment, Result, Subgoal, ToolSpec, fixed, fmt_number, safe_eval

_UNITS = {"mass": {"g": 1e-3, "kg": 1.0, "mg": 1e-6, "t": 1e3}, "speed": {"km/h": 1 / 3.6, "m/s": 1.0, "mph": 0.44704}}


class ScienceWorld(Environment):
    """Kinetic energy of many bodies from mixed units; unit conversion and arithmetic really run."""

    def __init__(self, rng: random.Random, n_goals: int):
        super().__init__(rng=rng, domain="science")
        self.bodies: list[tuple[str, float, str, float, str]] = []  # (name, mass, mass unit, speed, speed unit)
        for i in range(n_goals):
            mu = rng.choice(["g", "mg", "t"])
            su = rng.choice(["km/h", "mph"])
            self.bodies.append((f"sample {chr(65 + i % 26)}{i // 26 or ''}", round(rng.uniform(0.5, 900), 2), mu,
                                round(rng.uniform(1, 120), 1), su))
        self.instruction = ("Compute the total kinetic energy, in joules, of these bodies: "
                            + "; ".join(f"{n}: mass {m} {mu}, speed {v} {su}" for n, m, mu, v, su in self.bodies)
                            + ". Report the total to 4 significant figures.")
        self.tools = [
            ToolSpec("convert", "convert a value between units",
                     {"value": "float", "from_unit": "str", "to_unit": "str"}),
            ToolSpec("calc", "evaluate an arithmetic expression", {"expression": "str"}),
            ToolSpec("submit_answer", "submit the final answer", {"answer": "str"}),
        ]
        for name, m, mu, v, su in self.bodies:
            truth = 0.5 * m * _UNITS["mass"][mu] * (v * _UNITS["speed"][su]) ** 2
            self.subgoals.append(Subgoal(
                key=name, intent=f"compute the kinetic energy of {name}",
                builders=[fixed("convert", {"value": m, "from_unit": mu, "to_unit": "kg"}),
                          fixed("convert", {"value": v, "from_unit": su, "to_unit": "m/s"}),
                          lambda got: Call("calc", {"expression": f"0.5 * {fmt_number(got[0])} * "
                                                                  f"{fmt_number(got[1])} ** 2"})],
                truth=truth,
            ))

    def tool_convert(self, value: float, from_unit: str, to_unit: str) -> Result:
        """Tool: convert a mass or a speed between units, to 6 significant figures."""
        kind = next((k for k, u in _UNITS.items() if from_unit in u and to_unit in u), None)
        if kind is None:
            return Result(f"Error: cannot convert {from_unit} to {to_unit}", error=True)
        out = value * _UNITS[kind][from_unit] / _UNITS[kind][to_unit]
        return Result(f"{value} {from_unit} = {fmt_number(out)} {to_unit}", value=float(fmt_number(out)))

    def tool_calc(self, expression: str) -> Result:
        """Tool: evaluate an arithmetic expression with `safe_eval`, to 6 significant figures."""
        try:
            out = safe_eval(expression)
        except ValueError as exc:
            return Result(f"Error: {exc}", error=True)
        return Result(fmt_number(out), value=float(fmt_number(out)))

    def tool_submit_answer(self, answer: str) -> Result:
        """Tool: the agent's final answer, kept verbatim for `reward`."""
        return Result(f"Answer recorded: {answer}", value=answer)

    def corrupt(self, call: Call, rng: random.Random) -> tuple[Call, str]:
        """Convert from the wrong unit (`unit_error`) or slip in the energy formula (`arithmetic_error`)."""
        if call.name == "convert":
            units = _UNITS["mass"] if call.args["to_unit"] == "kg" else _UNITS["speed"]
            wrong = rng.choice([u for u in units if u != call.args["from_unit"] and u != call.args["to_unit"]])
            return Call("convert", {**call.args, "from_unit": wrong}), "unit_error"
        expr = call.args["expression"]
        return Call("calc", {"expression": expr.replace("** 2", "* 2") if rng.random() < 0.5
                             else expr.replace("0.5 *", "0.25 *")}), "arithmetic_error"

    def final_call(self, beliefs: dict[str, Any]) -> Call:
        """Submit the sum of the energies the agent computed, to 4 significant figures."""
        total = sum(v for v in beliefs.values() if isinstance(v, float))
        return Call("submit_answer", {"answer": f"{total:.4g} J"})

    def reward(self, final: Result) -> float:
        """1.0 if the submitted total matches the true total to 4 significant figures, else 0.0."""
        total = sum(s.truth for s in self.subgoals)
        return 1.0 if final.value == f"{total:.4g} J" else 0.0
