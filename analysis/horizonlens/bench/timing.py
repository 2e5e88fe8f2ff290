"""Timing helpers: repeated, interleaved measurements summarised as median and p95."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence


def measure(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Run `fn` warmup + repeats times; seconds as median, p95, min over the repeats."""
    return interleaved({"only": fn}, repeats=repeats, warmup=warmup)["only"]


def summarize(times: list[float]) -> dict[str, float]:
    """Median, p95 (nearest rank) and min of repeated timings, in seconds."""
    ts = sorted(times)
    return {"median_s": statistics.median(ts), "p95_s": ts[min(len(ts) - 1, int(round(0.95 * (len(ts) - 1))))],
            "min_s": ts[0], "runs": len(ts)}


def quantiles(values: Sequence[float]) -> dict[str, float | None]:
    """Median and p95 (nearest rank) of single observations, such as one per session or event, and their count."""
    if not values:
        return {"p50": None, "p95": None, "n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {"p50": round(statistics.median(ordered), 3), "p95": round(p95, 3), "n": len(ordered)}


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1) -> dict[str, dict[str, float]]:
    """Measure several variants round-robin so machine noise hits them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: summarize(ts) for name, ts in times.items()}


def loaded_note(machine: dict[str, Any], loads: Sequence[float]) -> str:
    """A sentence saying how busy the machine was while measuring: figures of a loaded machine are upper bounds."""
    cpus, top = machine.get("cpus") or 1, max(loads, default=0.0)
    if top <= cpus:
        return f"The machine was quiet (1-minute load average at most {top} on {cpus} CPUs)."
    return (f"The machine was shared with other work and loaded (1-minute load average up to {top} on {cpus} CPUs): "
            "these are figures of a loaded machine, slower than a quiet one would give.")
