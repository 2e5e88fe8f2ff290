"""Timing helpers: repeated, interleaved measurements summarised as median and p95."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def measure(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Run `fn` warmup + repeats times; seconds as median, p95, min over the repeats."""
    return interleaved({"only": fn}, repeats=repeats, warmup=warmup)["only"]


def summarize(times: list[float]) -> dict[str, float]:
    """Median, p95 (nearest rank) and min of repeated timings, in seconds."""
    ts = sorted(times)
    return {"median_s": statistics.median(ts), "p95_s": ts[min(len(ts) - 1, int(round(0.95 * (len(ts) - 1))))],
            "min_s": ts[0], "runs": len(ts)}


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
