"""What every source format is made of: the `Format` record, row builders, and field readers.

A format module (one per source, in `importers/formats/`) defines `detect(sample) -> bool` and
`convert(raw) -> Iterator[(trajectory row, step rows)]` and registers them as a `Format` with a
priority. The contract of `convert`: for any JSON value it either yields rows that fit the corpus
schema or raises `RecordError` with a reason the user can read; any other exception is a bug in the
converter (tests/unit/test_import_fuzz.py checks this on arbitrary JSON). `trajectory()` is where the
rows are made to fit: every column is checked against its type in `corpus/schema.py`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from horizonlens.corpus.schema import STEPS, TRAJECTORIES
from horizonlens.errors import RecordError
from horizonlens.ingest.readers import Raw

Converted = tuple[dict[str, Any], list[dict[str, Any]]]
MAX_ID_CHARS = 1000  # a trajectory id longer than this is refused (ids appear in URLs and file names)


@dataclass(frozen=True)
class Format:
    """A source format: its `--format` name, a description, a priority, a content test and a converter.

    `priority` decides between formats whose `detect` both accept a record: the higher one wins. Each
    format has its own priority (tests/unit/test_import.py checks they are distinct).
    """

    name: str
    description: str
    priority: int
    detect: Callable[[Any], bool]  # does this parsed record look like this format? Never raises.
    convert: Callable[[Raw], Iterator[Converted]]  # record -> rows; RecordError if malformed


# --- reading fields of a record ------------------------------------------------------------------
def obj(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one: optional nested objects read the same either way."""
    return value if isinstance(value, dict) else {}


def kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    names = {dict: "object", list: "array", str: "text", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def require(value: Any, key: str, want: type | tuple[type, ...]) -> Any:
    """`value[key]`, which must exist and be of type `want`; RecordError otherwise."""
    if not isinstance(value, dict):
        raise RecordError(f"record is not a JSON object (got {kind(value)})")
    if key not in value:
        raise RecordError(f"missing field '{key}'")
    if not isinstance(value[key], want) or (isinstance(value[key], bool) and want is int):
        name = want.__name__ if isinstance(want, type) else "/".join(k.__name__ for k in want)
        raise RecordError(f"field '{key}' should be {name}, got {kind(value[key])}")
    return value[key]


def number(value: Any, what: str) -> float | None:
    """A finite number (or numeric text) as float; None if absent or not a number; RecordError if infinite."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        x = float(value)
    except OverflowError as exc:
        raise RecordError(f"{what} is too large a number ({len(str(value))} digits)") from exc
    except ValueError:
        return None
    if not math.isfinite(x):
        raise RecordError(f"{what} is not a finite number ({str(value)[:40]})")
    return x


def count(value: Any, what: str) -> int | None:
    """A whole number (token counts, indexes) or None if absent; RecordError if it is not one."""
    if value is None or value == "":
        return None
    x = number(value, what)
    if x is None or not x.is_integer():
        raise RecordError(f"{what} should be a whole number, got {str(value)[:40]!r}")
    return int(x)


def last_line(text: str) -> str:
    """The last non-empty line of a tool's output, stripped: where a traceback names its error."""
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")


def content_id(value: Any) -> str:
    """A stable 12-hex-digit id from a record's content, for sources without ids of their own."""
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode("utf-8", "replace")).hexdigest()[:12]


def run_id(source: str, agent: str | None, *parts: object) -> str:
    """A trajectory id in the source's namespace: `<source>@<agent>:<parts>` when the agent is known.

    Sources number their runs by task and trial, so two models' runs of one task carry the same source id;
    the agent in the namespace keeps them apart. Without an agent the id is `<source>:<parts>`, and a second
    run with that id and different content is reported as a conflict by the import (never dropped silently).
    """
    rest = ":".join(str(p) for p in parts)
    return f"{source}@{agent}:{rest}" if agent else f"{source}:{rest}"


def agent_of(named: Any, raw: Raw) -> str | None:
    """The run's agent: the one the record names (non-empty text), else the one the user gave the import."""
    if isinstance(named, str) and named.strip():
        return named.strip()
    return raw.agent


# --- building rows -----------------------------------------------------------------------------------
def new_step(n: int, source: str, **fields: Any) -> dict[str, Any]:
    """Step row `n` with every column of the corpus contract (unknown ones None), overridden by `fields`."""
    step = {"step": n, "source": source, "reasoning": None, "message": None, "tool_calls": [], "observations": [],
            "knowledge": None, "check_passed": None, "check_detail": None, "error_label": None,
            "is_decisive_error": None, "label_source": None, "n_tokens": None, "started_at": None,
            "duration_s": None, "cost_usd": None}
    step.update(fields)
    return step


def trajectory(tid: str, source: str, steps: list[dict[str, Any]], **fields: Any) -> Converted:
    """A trajectory row with every column of the corpus contract (unknown ones None), paired with its steps.

    Every value is checked against its column's type (numbers that are text become text, whole floats
    become ints); a value that does not fit raises RecordError naming the field.
    """
    row: dict[str, Any] = {"trajectory_id": tid, "task_id": None, "trial": None, "source": source, "domain": None,
                           "agent": None, "teacher": None, "task": None, "outcome": "unknown", "reward": None,
                           "started_at": None, "duration_s": None, "cost_usd": None, "metadata": "{}"}
    row.update(fields)
    if not isinstance(row["metadata"], str):
        row["metadata"] = json.dumps(row["metadata"], ensure_ascii=False, default=str)
    if len(tid) > MAX_ID_CHARS:
        raise RecordError(f"trajectory id longer than {MAX_ID_CHARS} characters ({tid[:60]}...)")
    row = {name: fit(value, TRAJECTORIES.field(name).type, name) for name, value in row.items()}
    fitted = []
    for i, step in enumerate(steps):
        fitted.append({name: fit(value, STEPS.field(name).type, f"step {i}: {name}") for name, value in step.items()
                       if name in STEPS.names})
    return row, fitted


_INT_RANGE = {8: 2**7, 16: 2**15, 32: 2**31, 64: 2**63}


def fit(value: Any, typ: pa.DataType, what: str) -> Any:
    """`value` made to fit a column of type `typ`, or RecordError saying why it cannot."""
    if value is None:
        return None
    if pa.types.is_string(typ):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise RecordError(f"{what} should be text, got {kind(value)}")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates ("\ud800") cannot be stored: shown as U+FFFD
                value = value.encode("utf-8", "replace").decode("utf-8")
        return value
    if pa.types.is_integer(typ):
        x = count(value, what) if not isinstance(value, bool) else None
        if x is None:
            raise RecordError(f"{what} should be a whole number, got {kind(value)}")
        if not -_INT_RANGE[typ.bit_width] <= x < _INT_RANGE[typ.bit_width]:
            raise RecordError(f"{what} is out of range ({str(value)[:40]})")
        return x
    if pa.types.is_floating(typ):
        f = number(value, what) if not isinstance(value, bool) else None
        if f is None:
            raise RecordError(f"{what} should be a number, got {kind(value)}")
        return f
    if pa.types.is_boolean(typ):
        if not isinstance(value, bool):
            raise RecordError(f"{what} should be true or false, got {kind(value)}")
        return value
    if pa.types.is_timestamp(typ):
        if not isinstance(value, datetime):
            raise RecordError(f"{what} should be a time, got {kind(value)}")
        return value
    if pa.types.is_list(typ):
        if not isinstance(value, list):
            raise RecordError(f"{what} should be a list, got {kind(value)}")
        item = typ.value_type
        return [{f.name: fit(obj(v).get(f.name), f.type, f"{what}.{f.name}") for f in item}
                if isinstance(v, dict) else _not_object(what) for v in value]
    raise TypeError(f"no rule to fit a value to {typ}")  # a column type added to the schema without a rule here


def _not_object(what: str) -> Any:
    raise RecordError(f"{what} should hold objects")
