"""What "the text of a step" is: one definition for search, the word index, token estimates and benchmarks.

A step's searchable text is its reasoning, message, knowledge, each tool call's name and arguments, and
each observation's content. `STEP_TEXT_FIELDS` gives each field as a DuckDB expression over a step row
aliased `{a}` (matching field by field is faster than one lowered concatenation, and list fields are
never cast to VARCHAR); `step_text` is the same thing in Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STEP_TEXT_FIELDS: tuple[str, ...] = (
    "{a}.reasoning", "{a}.message", "{a}.knowledge",
    "array_to_string(list_transform({a}.tool_calls, lambda c: c.name || ' ' || c.arguments), ' ')",
    "array_to_string(list_transform({a}.observations, lambda o: o.content), ' ')",
)

# Rough size of a BPE token in UTF-8 bytes, for corpora imported without a tokenizer.
BYTES_PER_TOKEN = 3.8


def step_text_parts(step: Mapping[str, Any]) -> list[str]:
    """The searchable pieces of one step row (a dict with the corpus `steps` columns), in field order."""
    parts = [step.get("reasoning") or "", step.get("message") or "", step.get("knowledge") or ""]
    for call in step.get("tool_calls") or []:
        parts.append(f"{call.get('name') or ''} {call.get('arguments') or ''}")
    for obs in step.get("observations") or []:
        parts.append(obs.get("content") or "")
    return [p for p in parts if p]


def step_text(step: Mapping[str, Any]) -> str:
    """A step's searchable text as one string (pieces joined by a space)."""
    return " ".join(step_text_parts(step))


def approx_tokens(text: str) -> int:
    """Token count estimate for corpora without a tokenizer: ~3.8 UTF-8 bytes per BPE token."""
    return max(1, round(len(text.encode("utf-8", errors="replace")) / BYTES_PER_TOKEN)) if text else 0


def step_tokens_estimate(step: Mapping[str, Any]) -> int:
    """Estimated tokens of one step's text (what `n_tokens` holds when the source gives no count)."""
    return approx_tokens(step_text(step))


def tool_names_sql(alias: str) -> str:
    """SQL for the list of tool names a step calls; only the names are materialised, never the arguments.

    Unnesting whole tool-call structs runs out of memory on a 1M-trajectory corpus.
    """
    return f"list_transform({alias}.tool_calls, lambda c: c.name)"


def like_pattern(text: str) -> str:
    r"""A case-insensitive literal substring as an ILIKE pattern: %, _ and \ mean themselves."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def step_text_match(alias: str) -> tuple[str, int]:
    """(SQL predicate, number of parameters): some text field of step `alias` contains the pattern."""
    parts = [f"{field.format(a=alias)} ILIKE ? ESCAPE '\\'" for field in STEP_TEXT_FIELDS]
    return "(" + " OR ".join(parts) + ")", len(parts)


def step_text_sql(alias: str) -> str:
    """SQL for a step's whole searchable text as one string (for building indexes)."""
    return " || ' ' || ".join(f"coalesce({f.format(a=alias)}, '')" for f in STEP_TEXT_FIELDS)
