"""Timing helpers: repeated, interleaved measurements summarised as median and p95."""

from __future__ import annotations

import os
import platform
import statistics
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
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


def machine() -> dict[str, Any]:
    """The machine and library versions the figures were measured with."""
    import duckdb
    import pyarrow

    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "duckdb": duckdb.__version__, "pyarrow": pyarrow.__version__}
    try:
        with open("/proc/meminfo") as fh:
            info["memory_gb"] = round(int(fh.readline().split()[1]) / 2**20, 1)
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "?")
    except OSError:
        pass
    try:  # the installed version, without importing torch for it
        info["torch"] = version("torch")
    except PackageNotFoundError:
        pass
    return info


def cpu_seconds(server_pid: int) -> tuple[float, float]:
    """CPU seconds used so far by the app server and by this process's Chromium processes (Linux /proc).

    The machine is shared, so wall times vary with load; CPU seconds per action say what the work costs.
    """
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            names[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parent[int(entry)] = int(fields[1])
        used[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    mine, frontier = set(), [os.getpid()]
    while frontier:
        pid = frontier.pop()
        kids = [c for c, p in parent.items() if p == pid and c not in mine]
        mine.update(kids)
        frontier += kids
    browser = sum(used[p] for p in mine if "chrom" in names.get(p, ""))
    return used.get(server_pid, 0.0), browser
