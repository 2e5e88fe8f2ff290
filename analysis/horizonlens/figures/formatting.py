"""Values written for people: counts, numbers, shares, durations, sizes and costs, one way everywhere.

The pages, the figures, the CLI and the benchmark report all show the same kinds of values; each kind is
written here once, and a missing value (None or NaN) is always the same dash.
"""

from __future__ import annotations

from typing import Any

MISSING = "—"


def is_missing(value: Any) -> bool:
    """None, NaN (float or numpy), or pandas' NA: a value there is nothing to say about."""
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN and NA are the only values unequal to themselves
    except (TypeError, ValueError):  # pandas' NA refuses bool()
        return True


def count(value: Any) -> str:
    """A whole number with thousands separators: 12,345."""
    return MISSING if is_missing(value) else f"{int(value):,}"


def number(value: Any, digits: int = 2) -> str:
    """A real number with `digits` decimals and thousands separators: 1,234.57."""
    return MISSING if is_missing(value) else f"{float(value):,.{digits}f}"


def share(value: Any, digits: int = 0) -> str:
    """A share in [0, 1] as a percentage with `digits` decimals: 0.4217 -> 42%."""
    return MISSING if is_missing(value) else f"{float(value):.{digits}%}"


def seconds(value: Any) -> str:
    """A duration: milliseconds under one second (850.0 ms), seconds above (2.40 s)."""
    if is_missing(value):
        return MISSING
    x = float(value)
    return f"{x * 1000:,.1f} ms" if abs(x) < 1 else f"{x:,.2f} s"


def size(n_bytes: Any) -> str:
    """A byte count in binary units: 512 B, 1.5 KB, 12.0 MB, 3.2 GB (GB is the largest unit)."""
    if is_missing(n_bytes):
        return MISSING
    n = float(n_bytes)
    for unit in ("B", "KB", "MB"):
        if abs(n) < 1024:
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GB"


def usd(value: Any) -> str:
    """A cost in US dollars, to the hundred-thousandth (per-step costs are fractions of a cent)."""
    return MISSING if is_missing(value) else f"${float(value):,.5f}"

