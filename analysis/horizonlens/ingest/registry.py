"""The source formats Horizon Lens imports, and how a record's format is chosen (docs/importing.md).

Each format lives in its own module under `formats/` and declares a `Format` (name, description,
priority, detect, convert). A record's format is the highest-priority format whose `detect` accepts
it, so a specific format (ATIF: `steps` + `schema_version`) wins over a general one that also matches
(OpenAI chat: any `messages`). To add a format: write its module, give it a priority that places it
among these, and list it here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from horizonlens.errors import RecordError
from horizonlens.ingest.base import Converted, Format
from horizonlens.ingest.formats import (
    atif,
    chat_dataset,
    inspect_log,
    mini_swe_agent,
    openai_chat,
    openhands,
    sharegpt,
    swe_agent,
    who_and_when,
)
from horizonlens.ingest.readers import Raw

# Highest priority first: the order of the --format help and of the Import page's list.
FORMATS: list[Format] = sorted(
    [atif.FORMAT, who_and_when.FORMAT, openhands.FORMAT, mini_swe_agent.FORMAT, inspect_log.FORMAT,
     swe_agent.FORMAT, chat_dataset.FORMAT, sharegpt.FORMAT, openai_chat.FORMAT], key=lambda f: -f.priority)
BY_NAME: dict[str, Format] = {f.name: f for f in FORMATS}


def detect(value: Any) -> Format | None:
    """The highest-priority format whose content test accepts this record, or None."""
    return next((fmt for fmt in FORMATS if fmt.detect(value)), None)


def convert(raw: Raw, fmt_name: str = "auto", agent: str | None = None) -> Iterator[Converted]:
    """Convert one record in the named format (or the detected one for "auto"), tagged with format and file.

    `agent` is the agent of every run whose record names none (`import --agent`): formats put it in the
    run's id (`<source>@<agent>:...`), and any run still without an agent gets it here. Raises RecordError
    for a record no format accepts or that its format cannot convert.
    """
    fmt = BY_NAME[fmt_name] if fmt_name != "auto" else detect(raw.value)
    if fmt is None:
        raise RecordError("unrecognised record (not any supported format; pass --format to force one)")
    if agent:
        raw = replace(raw, agent=agent)
    for traj, steps in fmt.convert(raw):
        if traj.get("agent") is None and raw.agent:
            traj["agent"] = raw.agent
        traj["_format"] = fmt.name
        traj["_file"] = raw.file
        yield traj, steps
