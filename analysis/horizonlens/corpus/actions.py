"""What an action is when it is compared with a reference: a tool call's arguments, and how two of them differ.

One definition for the importers (a check's detail says what was expected and what was given) and the metrics
(a run's tool calls aligned with the actions its source expected). Arguments are compared as JSON values:
objects key by key, lists position by position, numbers by value (5 and 5.0 are the same amount; true is not
1), text exactly. Each difference names the path to the value that differs, so a 20-field booking that
differs in one payment amount reads as `payment_methods[1].amount: expected 5, given 55`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class _Absent:
    """The value on the side of a difference that does not have the key or list item at all."""

    def __repr__(self) -> str:
        return "ABSENT"

    def __reduce__(self) -> str:
        return "ABSENT"  # unpickled as the module's one ABSENT (results are pickled by the app's cache)


ABSENT: Any = _Absent()
VALUE_CHARS = 80  # characters of one value in a difference's text; the rest is cut with "…"


@dataclass(frozen=True)
class Difference:
    """One place where a given value differs from the expected one."""

    path: str  # where in the arguments: "flight_id", "payment_methods[1].amount"; "" for the whole value
    expected: Any  # the reference's value, or ABSENT if the reference does not have this path
    given: Any  # the value the agent gave, or ABSENT if it left this path out

    def text(self, limit: int = VALUE_CHARS) -> str:
        """`path: expected X, given Y`, each value as compact JSON and cut at `limit` characters."""
        where = f"{self.path}: " if self.path else ""
        return f"{where}{expected_given(self.expected, self.given, limit)}"


def parse_arguments(arguments: Any) -> Any:
    """A tool call's arguments as a JSON value: JSON text parsed, anything else as it is (bad JSON stays text)."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def same_value(expected: Any, given: Any) -> bool:
    """Whether two JSON values are equal as arguments: numbers by value, everything else exactly."""
    return not differences(expected, given)


def differences(expected: Any, given: Any, path: str = "") -> list[Difference]:
    """Every place where `given` differs from `expected`, depth first, in the reference's key order."""
    if isinstance(expected, dict) and isinstance(given, dict):
        out: list[Difference] = []
        for key in [*expected, *(k for k in given if k not in expected)]:
            sub = f"{path}.{key}" if path else str(key)
            out += differences(expected.get(key, ABSENT), given.get(key, ABSENT), sub)
        return out
    if isinstance(expected, list) and isinstance(given, list):
        out = []
        for i in range(max(len(expected), len(given))):
            out += differences(expected[i] if i < len(expected) else ABSENT,
                               given[i] if i < len(given) else ABSENT, f"{path}[{i}]")
        return out
    if _is_number(expected) and _is_number(given):
        return [] if expected == given else [Difference(path, expected, given)]
    if type(expected) is type(given) and expected == given:
        return []
    return [Difference(path, expected, given)]


def show_value(value: Any, limit: int = VALUE_CHARS) -> str:
    """A value as compact JSON (text in quotes), cut at `limit` characters; ABSENT as "(absent)"."""
    if value is ABSENT:
        return "(absent)"
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"


def expected_given(expected: Any, given: Any, limit: int = VALUE_CHARS) -> str:
    """`expected X, given Y`: how every check detail that knows its reference states both values."""
    return f"expected {show_value(expected, limit)}, given {show_value(given, limit)}"


def call_text(name: str | None, arguments: Any, limit: int = 160) -> str:
    """A tool call as one line, `name({"arg": value, ...})`, cut at `limit` characters."""
    args = show_value(parse_arguments(arguments), limit)
    return f"{name or '?'}({args})"
