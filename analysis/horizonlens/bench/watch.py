"""Live runs: seconds from a run written into a watched folder to that run being queryable in the corpus.

The watcher runs as a user runs it, in its own process: `horizonlens import --watch DIR --into CORPUS` (the
same `FolderWatcher.run` loop that `serve --watch` runs in a server thread, one poll a second). The benchmark
copies a corpus, starts the watcher on an empty folder, waits for one untimed run to arrive (the watcher is
then polling and has paid its first import), and then writes runs the three ways a harness does, one event at
a time, round-robin:

- **new .jsonl**: a new JSON Lines file holding one run;
- **appended line**: one more line at the end of a JSON Lines file that already holds runs, written in two
  pieces (a writer flushing half a line first; the watcher must wait for its newline);
- **new .json**: a new JSON file (an array with one run), which the watcher reads once it has not changed for
  its settle time (a writer may still be writing it).

Each event is timed from the moment its last byte is written and its file closed to the moment a reader finds
the run in `trajectories`: a `CorpusStore` kept open and refreshed every `LOOK_S`, as the app's store is. The
watcher's own log gives the time of each poll that imported something (reading, the import transaction, the
derived data brought up to date), the baseline the latencies are compared with: what is left is the wait for
the next poll (and, for whole files, the settle time).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from horizonlens.bench.timing import loaded_note, quantiles

EVENTS = 21  # timed events, 7 of each kind
KINDS = ("new .jsonl", "appended line", "new .json")
LOOK_S = 0.05  # how often the reader looks for the run
TIMEOUT_S = 300.0  # one event that takes longer ends the benchmark (the watcher is stuck or dead)
TARGET_S = 10.0  # "a run written into the folder is in the corpus within 10 s"
_POLL_LINE = re.compile(r"(\d+) run\(s\) added, (\d+) replaced, .* bytes read in ([\d.]+)s")


def watched_run(task: int, steps: int = 8) -> dict[str, Any]:
    """One τ-bench-shaped run (the openai-chat format); its trajectory id in the corpus is `tau-bench:<task>:0`."""
    traj: list[dict[str, Any]] = [{"role": "system", "content": "You are an airline agent. Use the tools."},
                                  {"role": "user", "content": f"Please rebook my flight (ticket {task})."}]
    for i in range(steps):
        call = {"name": "search_flights", "arguments": json.dumps({"origin": "ATL", "destination": "SEA",
                                                                   "date": f"2026-08-{1 + i % 28:02d}"})}
        traj += [{"role": "assistant", "content": f"Looking at day {i + 1}.",
                  "tool_calls": [{"id": f"c{task}-{i}", "type": "function", "function": call}]},
                 {"role": "tool", "tool_call_id": f"c{task}-{i}",
                  "content": json.dumps([{"flight_id": f"HL{400 + i}", "price": 90 + i, "seats_left": i}])}]
    traj.append({"role": "assistant", "content": f"Rebooked ticket {task} on HL401."})
    return {"task_id": task, "trial": 0, "reward": 1.0, "info": {"task": {"instruction": f"rebook {task}"}},
            "traj": traj}


def _write(folder: Path, kind: str, task: int) -> None:
    """Write one run into the watched folder the way `kind` says; returns once its file is closed."""
    data = json.dumps(watched_run(task))
    if kind == "new .jsonl":
        (folder / f"run-{task}.jsonl").write_text(data + "\n")
    elif kind == "appended line":
        line = (data + "\n").encode()
        for piece in (line[:len(line) // 2], line[len(line) // 2:]):
            with (folder / "runs.jsonl").open("ab") as fh:
                fh.write(piece)
    else:
        tmp = folder / f".run-{task}.part"  # written beside, then renamed: the watcher never sees half a file
        tmp.write_text(f"[{data}]")
        tmp.rename(folder / f"run-{task}.json")


def _arrived(store: Any, task: int, started: float, watcher: subprocess.Popen[bytes]) -> float:
    """Seconds from `started` until the run of `task` is in the store's `trajectories`."""
    tid = f"tau-bench:{task}:0"
    while True:
        store.refresh()
        if store.scalar("SELECT count(*) FROM trajectories WHERE trajectory_id = ?", [tid]):
            return time.perf_counter() - started
        if watcher.poll() is not None:
            raise RuntimeError(f"the watcher stopped (exit {watcher.returncode})")
        if time.perf_counter() - started > TIMEOUT_S:
            raise TimeoutError(f"{tid} not in the corpus after {TIMEOUT_S:.0f} s")
        time.sleep(LOOK_S)


def bench_watch(corpus: Path, work: Path, events: int = EVENTS, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Watch latencies into a copy of `corpus` (see the module docstring); `work` holds the copy and the folder."""
    from horizonlens.query.store import open_store

    target, folder = work / f"watch-{corpus.name}", work / f"watch-{corpus.name}-live"
    for path in (target, folder):
        shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(corpus, target, ignore=shutil.ignore_patterns(".lock"))
    folder.mkdir(parents=True)
    store = open_store(target)
    n = int(store.scalar("SELECT count(*) FROM trajectories") or 0)
    watcher_log = work / f"watch-{corpus.name}.log"
    load_before = os.getloadavg()[0]
    with watcher_log.open("wb") as err:
        watcher = subprocess.Popen([sys.executable, "-m", "horizonlens.cli", "import", "--watch", str(folder),
                                    "--into", str(target)], stdout=subprocess.DEVNULL, stderr=err)
        try:
            task = 9_000_000
            _write(folder, "appended line", task)  # the warm-up: also starts runs.jsonl for the appended lines
            warmup = _arrived(store, task, time.perf_counter(), watcher)
            timed: list[dict[str, Any]] = []
            for i in range(events):
                task += 1
                kind = KINDS[i % len(KINDS)]
                _write(folder, kind, task)
                timed.append({"kind": kind, "latency_s": round(_arrived(store, task, time.perf_counter(), watcher),
                                                               3)})
        finally:
            watcher.terminate()  # SIGTERM: the watcher finishes the poll in progress and stops
            try:
                watcher.wait(timeout=120)
            except subprocess.TimeoutExpired:
                watcher.kill()
                watcher.wait()
            store.close()
    polls = [float(m[3]) for m in _POLL_LINE.finditer(watcher_log.read_text(errors="replace"))]
    latencies = [e["latency_s"] for e in timed]
    result = {"trajectories": n, "events": timed, "warmup_s": round(warmup, 3),
              "latency": quantiles(latencies), "max_s": max(latencies),
              "by_kind": {k: quantiles([e["latency_s"] for e in timed if e["kind"] == k]) for k in KINDS},
              "poll_s": quantiles(polls[1:]),  # the warm-up's poll is left out, as its event is
              "within_target": sum(t <= TARGET_S for t in latencies), "target_s": TARGET_S,
              "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)]}
    p50 = result["poll_s"]["p50"]
    result["latency_p50_over_poll_p50"] = round(result["latency"]["p50"] / p50, 2) if p50 else None
    log(f"  {n:,} trajectories: watch latency p50 {result['latency']['p50']} s, p95 {result['latency']['p95']} s, "
        f"{result['within_target']}/{len(latencies)} within {TARGET_S:.0f} s")
    shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    return result


def report_lines(results: dict[str, Any]) -> list[str]:
    """The live-runs section of CONCURRENCY.md."""
    rows, machine = results["corpora"], results.get("machine", {})
    lines = ["## Live runs: a run written into a watched folder, queryable in the corpus",
             "",
             "`horizonlens bench --scale none --watch`: `horizonlens import --watch DIR --into CORPUS` in its own "
             "process (the loop `serve --watch` runs, one poll a second) on a copy of each corpus; "
             f"{len(rows[0]['events'])} events, one at a time, round-robin: {', '.join(KINDS)} (a JSON file "
             "is read once it has not changed for a second). Seconds from the file closed to the run found by a "
             "reader refreshing every 50 ms. *Poll* is the watcher's own time for a poll that imported a run "
             "(read, import transaction, derived data), the baseline in the same run; the rest is the wait for the "
             f"next poll. Target: {TARGET_S:.0f} s.",
             "",
             f"Machine: {machine.get('cpus')} CPUs ({machine.get('cpu', '?')}), {machine.get('memory_gb', '?')} GB; "
             + (f"run started {results['started_at']}. " if results.get("started_at") else "")
             + loaded_note(machine, [x for r in rows for x in r["load_average"]]),
             "",
             "| corpus (trajectories) | latency p50 / p95 (s) | max (s) | new .jsonl p50 | appended line p50 | "
             "new .json p50 | poll p50 / p95 (s) | latency p50 ÷ poll p50 | within 10 s | load average |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        k = r["by_kind"]
        lines.append(f"| {r['trajectories']:,} | {r['latency']['p50']} / {r['latency']['p95']} | {r['max_s']} | "
                     f"{k['new .jsonl']['p50']} | {k['appended line']['p50']} | {k['new .json']['p50']} | "
                     f"{r['poll_s']['p50']} / {r['poll_s']['p95']} | {r['latency_p50_over_poll_p50']} | "
                     f"{r['within_target']}/{len(r['events'])} | {r['load_average'][0]}–{r['load_average'][1]} |")
    return lines
