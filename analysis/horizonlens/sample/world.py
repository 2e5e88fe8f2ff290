"""The shared machinery of the simulated environments the sample agents act in.

Each domain (search, engineering, science, ...) is an `Environment`: a deterministic world with
tools that really execute. A task is a list of subgoals; a subgoal is a chain of tool calls where
each call may depend on what the previous call returned. The sample generator drives the agent
through these chains and decides, with planted probabilities, when the agent gets an argument
wrong; the environment decides what that does.
"""

from __future__ import annotations

import ast
import copy
import json
import operator
import random
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar


@dataclass(frozen=True)
class Call:
    """One tool call as the agent writes it."""

    name: str
    args: dict[str, Any]

    def arguments_json(self) -> str:
        """The call's arguments as the JSON text a trajectory step stores."""
        return json.dumps(self.args, ensure_ascii=False)


@dataclass
class Result:
    """What a tool returned: the observation text and the structured value the agent takes from it."""

    text: str
    value: Any = None
    error: bool = False


@dataclass
class Subgoal:
    """A chain of calls; `builders[i](values)` gives call i from the values calls 0..i-1 returned."""

    key: str
    intent: str  # one line of what the agent is trying to do, for its reasoning text
    builders: list[Callable[[list[Any]], Call]]
    truth: Any = None  # the value a correct chain ends with (for the final answer)


def fixed(name: str, args: dict[str, Any]) -> Callable[[list[Any]], Call]:
    """A chain link whose call does not depend on what the earlier calls returned."""
    return lambda _values: Call(name, dict(args))


@dataclass
class ToolSpec:
    """A tool as the system prompt lists it: name, what it does, and its parameters with their types."""

    name: str
    description: str
    params: dict[str, str]


@dataclass
class Environment:
    """Base class: state, tools, and the verifier's reference execution."""

    MUTATING: ClassVar[frozenset[str]] = frozenset()  # tools that change the world state

    rng: random.Random
    domain: str = ""
    instruction: str = ""
    tools: list[ToolSpec] = field(default_factory=list)
    subgoals: list[Subgoal] = field(default_factory=list)

    # --- tools ---------------------------------------------------------------------------------
    def execute(self, call: Call) -> Result:
        """Run a tool call against the world; unknown tools and bad arguments become error results."""
        handler = getattr(self, f"tool_{call.name}", None)
        if handler is None:
            return Result(f"Error: unknown tool '{call.name}'", error=True)
        try:
            return handler(**call.args)
        except TypeError as exc:
            return Result(f"Error: bad arguments for {call.name}: {exc}", error=True)

    def state_fingerprint(self) -> str:
        """A canonical dump of the mutable world state (what the verifier compares)."""
        return json.dumps(self.state(), sort_keys=True, default=str)

    def state(self) -> Any:
        """The mutable world state the verifier compares (None for worlds without one)."""
        return None

    def reference(self, call: Call) -> tuple[Result, str]:
        """Execute `call` on a copy of the world: what the intended action would have produced."""
        if call.name not in self.MUTATING:  # read-only tools cannot change the world: no copy needed
            return self.execute(call), self.state_fingerprint()
        shadow = copy.deepcopy(self)
        result = shadow.execute(call)
        return result, shadow.state_fingerprint()

    # --- agent behaviour hooks -------------------------------------------------------------------
    def corrupt(self, call: Call, rng: random.Random) -> tuple[Call, str]:
        """A plausible wrong version of `call` and the error category it belongs to."""
        raise NotImplementedError

    def repair_calls(self, wrong: Call, right: Call, wrong_result: Result) -> list[Call]:
        """Calls that undo a wrong mutating action before the subgoal is redone (default: none)."""
        return []

    def final_call(self, beliefs: dict[str, Any]) -> Call:
        """The call that ends the episode (an answer or a final check), given what the agent believes."""
        raise NotImplementedError

    def reward(self, final: Result) -> float:
        """Fraction of the task's goals the final state/answer meets (1.0 = success)."""
        raise NotImplementedError

    def system_prompt(self) -> str:
        """The system prompt of a trajectory in this world: the role and the tools with their parameters."""
        lines = [f"You are an autonomous agent working on a {self.domain} task.",
                 "Think step by step, call one tool at a time, and check every result before moving on.",
                 "Available tools:"]
        for tool in self.tools:
            params = ", ".join(f"{k}: {v}" for k, v in tool.params.items())
            lines.append(f"- {tool.name}({params}): {tool.description}")
        return "\n".join(lines)


# --- a small safe arithmetic evaluator used by the science and engineering worlds ---------------

_OPS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    ast.USub: operator.neg, ast.UAdd: operator.pos,
}


def safe_eval(expression: str, names: dict[str, float] | None = None) -> float:
    """Evaluate +-*/ // % ** over numbers and the given names; anything else raises ValueError."""
    names = names or {}

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise ValueError("exponent too large")
            return _OPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        raise ValueError(f"unsupported expression element: {ast.dump(node)[:40]}")

    try:
        return ev(ast.parse(expression, mode="eval"))
    except SyntaxError as exc:
        raise ValueError(f"syntax error: {exc.msg}") from exc
    except ZeroDivisionError as exc:
        raise ValueError("division by zero") from exc


def fmt_number(x: float) -> str:
    """A number as the tools print it: 6 significant figures."""
    return f"{x:.6g}"


_SYL = ["ka", "lo", "mi", "ren", "ta", "vor", "sel", "an", "dri", "qua", "bel", "tor", "nia", "ost", "ul", "fen",
        "gar", "is", "mon", "pe", "rha", "sul", "ved", "yan", "zor", "el", "ith", "cor", "dun", "hal"]


def make_name(rng: random.Random, parts: int = 2) -> str:
    """A made-up proper name (organisation, city, person) built from `parts` random syllables."""
    return "".join(rng.choice(_SYL) for _ in range(parts)).capitalize()
