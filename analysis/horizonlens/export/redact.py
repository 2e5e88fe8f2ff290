"""Redaction: text that leaves Horizon Lens (exports, bundles) with secrets and addresses replaced first.

One mechanism for every output. Built-in patterns catch API keys of the common providers, bearer tokens
and e-mail addresses; they are on unless turned off. Patterns a user adds (`--redact REGEX`) run after
them. Each match becomes `[REDACTED:<name>]`, so a reader sees that something was there and what kind.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from horizonlens.errors import ExportError

# Provider key shapes: OpenAI/Anthropic (sk-...), AWS access key ids, GitHub and GitLab tokens, Slack, Google,
# Hugging Face. Each anchors on the provider's prefix, so ordinary words never match.
API_KEY = (r"\b(?:sk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}"
           r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}|glpat-[A-Za-z0-9_-]{20,}"
           r"|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z0-9]{30,})")
BEARER = r"\b(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
EMAIL = r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
BUILTIN: dict[str, str] = {"api-key": API_KEY, "bearer-token": BEARER, "email": EMAIL}
# Text that a built-in pattern could match contains its hint; testing the hint first skips the pattern's
# slower scan for almost every text of a corpus.
_API_HINT = re.compile(r"sk-|AKIA|ASIA|gh[pousr]_|github_pat_|glpat-|xox|AIza|hf_")
HINTS: dict[str, Any] = {"api-key": lambda t: _API_HINT.search(t) is not None,
                         "bearer-token": lambda t: "earer" in t or "EARER" in t,
                         "email": lambda t: "@" in t}
MAX_PATTERNS = 64
MAX_PATTERN_CHARS = 1_000


@dataclass
class Redactor:
    """Replaces matches of the built-in and the user's patterns in text; counts what it replaced, by pattern."""

    patterns: list[str] = field(default_factory=list)  # the user's, as typed
    defaults: bool = True  # the built-in patterns (API keys, bearer tokens, e-mail addresses)
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if len(self.patterns) > MAX_PATTERNS:
            raise ExportError(f"{len(self.patterns)} redaction patterns; at most {MAX_PATTERNS}")
        self._compiled: list[tuple[str, re.Pattern[str], Any]] = []
        if self.defaults:
            self._compiled += [(name, re.compile(p), HINTS[name]) for name, p in BUILTIN.items()]
        self._compiled += [(f"pattern-{i + 1}", compile_pattern(p), None) for i, p in enumerate(self.patterns)]

    @property
    def active(self) -> bool:
        """Whether any pattern is in force."""
        return bool(self._compiled)

    def text(self, value: str | None) -> str | None:
        """`value` with every match replaced by `[REDACTED:<name>]` (None stays None)."""
        if not value:
            return value
        for name, rx, hint in self._compiled:
            if hint is not None and not hint(value):
                continue
            value, n = rx.subn(f"[REDACTED:{name}]", value)
            if n:
                self.counts[name] += n
        return value

    def messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Chat messages with their texts redacted in place (content, reasoning, tool-call names and arguments)."""
        for m in messages:
            for key in ("content", "reasoning_content"):
                if m.get(key):
                    m[key] = self.text(m[key])
            for call in m.get("tool_calls") or []:
                fn = call["function"]
                fn["name"], fn["arguments"] = self.text(fn["name"]), self.text(fn["arguments"])
        return messages

    def value(self, value: Any) -> Any:
        """Every string inside a JSON-like value (dicts, lists) redacted; keys and other types kept."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value

    def describe(self) -> dict[str, Any]:
        """What a manifest records: which patterns were in force and how many matches each replaced."""
        return {"default_patterns": sorted(BUILTIN) if self.defaults else [], "patterns": list(self.patterns),
                "replaced": dict(sorted(self.counts.items()))}


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A user's redaction pattern, compiled; ExportError names it and says why it cannot be used."""
    if not pattern:
        raise ExportError("an empty redaction pattern would match everywhere")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ExportError(f"redaction pattern of {len(pattern):,} characters; at most {MAX_PATTERN_CHARS:,}")
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ExportError(f"redaction pattern {pattern!r} does not compile: {exc}") from None
    if rx.search(""):
        raise ExportError(f"redaction pattern {pattern!r} matches the empty string, so it would match everywhere")
    return rx
