"""Browser timings at a routing shape: Next on the Trajectory page and the Routing page, in headless Chromium.

What a user feels at the Agents-A1 shape (40 layers x 256 experts) is the page in the browser, so each
figure here runs from a click (or a navigation) until the page has settled *and* the routing chart
of the new step is drawn. `horizonlens bench --shape` calls `bench_shape_app`: the shapes and the bundled
4 x 16 sample (the baseline) on the same trajectory, interleaved in one run, with `report_lines` for
bench/RESULTS.md. Beside each wall time it gives the CPU seconds of the server and of the browser, which
vary less than wall time on a shared machine.

Each repeat starts a fresh server and first opens another replayed trajectory (untimed), so the server has
started and imported what the page needs, while nothing of the timed trajectory is in Streamlit's caches: the
timed open is a user's first visit of that trajectory on a running server, with its replay cached on disk. The
floor (`serve --floor`, bench/pages.py) is timed in the same run, in fresh browser contexts, so opening a
trajectory also reads as a multiple of what any page costs.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from horizonlens.bench.browser import CHROMIUM, READY, chromium, serving

SETTLE_TIMEOUT_MS = 180_000  # a page that takes longer than this is a failure, not a slow figure
STEP_CHART_TITLE = "Experts chosen in step {step}"  # the step panel's routing chart title (figures.routing)


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


class _Action:
    """Wall time and CPU seconds (server, browser) of one user action."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid

    def __enter__(self) -> _Action:
        self.cpu0 = cpu_seconds(self.server_pid)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        cpu = cpu_seconds(self.server_pid)
        self.server_cpu, self.browser_cpu = cpu[0] - self.cpu0[0], cpu[1] - self.cpu0[1]


def wait_settled(page: Any) -> None:
    """Wait until Streamlit has no script (or fragment) run in flight and no placeholder skeleton."""
    page.wait_for_function(READY, timeout=SETTLE_TIMEOUT_MS)


def wait_step_drawn(page: Any, step: int) -> None:
    """Wait for the step's heading and its routing chart (drawn by Plotly, so the title is in the SVG)."""
    page.get_by_role("heading", name=f"Step {step} ·").first.wait_for(timeout=SETTLE_TIMEOUT_MS)
    page.locator(".gtitle", has_text=STEP_CHART_TITLE.format(step=step)).first.wait_for(timeout=SETTLE_TIMEOUT_MS)
    wait_settled(page)


def wait_routing_drawn(page: Any) -> None:
    """Wait for the Routing page's first tab: its charts drawn and the script idle."""
    page.locator(".gtitle", has_text="Expert load per step").first.wait_for(timeout=SETTLE_TIMEOUT_MS)
    wait_settled(page)


def _stats(acts: list[_Action]) -> dict[str, Any]:
    """Median and max wall seconds, with the median CPU seconds of the server and of the browser."""
    walls = [a.wall for a in acts]
    return {"median": statistics.median(walls), "max": max(walls), "runs": len(walls),
            "samples": [round(t, 3) for t in walls],
            "server_cpu_median": statistics.median(a.server_cpu for a in acts),
            "browser_cpu_median": statistics.median(a.browser_cpu for a in acts)}


def pick_trajectory(corpus: Path, checkpoint_id: str) -> tuple[str, int]:
    """The replayed trajectory with the most tokens, and an agent step to start paging from."""
    from horizonlens.query.store import open_store

    store = open_store(corpus)
    try:
        row = store.query("SELECT trajectory_id, count(*) AS n FROM replay_steps WHERE checkpoint_id = ? GROUP BY 1 "
                          "ORDER BY sum(n_tokens) DESC, 1 LIMIT 1", [checkpoint_id]).to_pylist()
    finally:
        store.close()
    if not row:
        raise RuntimeError(f"no replay of {checkpoint_id} in {corpus}")
    return str(row[0]["trajectory_id"]), min(3, int(row[0]["n"]) - 1)


@dataclass(frozen=True)
class AppTarget:
    """One app to time: a corpus, the checkpoint its replay was made with, the trajectory and first step.

    `warmup`: another replayed trajectory opened first, untimed (None: the timed open is the server's first page).
    """

    corpus: Path
    checkpoint: Path
    trajectory_id: str
    start_step: int = 3
    warmup: str | None = None


ACTIONS = ("open_trajectory", "next_step", "routing_page", "routing_page_revisit")


def _session(browser: Any, target: AppTarget, nexts: int, width: int) -> dict[str, list[_Action]]:
    """One fresh server and page: open the trajectory, press Next `nexts` times, visit Routing twice."""
    out: dict[str, list[_Action]] = {k: [] for k in ACTIONS}
    step0 = target.start_step
    with serving(target.corpus, target.checkpoint) as app:
        url, pid = app.url, app.process.pid
        if target.warmup:
            _warm_up(browser, url, target.warmup, width)
        page = browser.new_page(viewport={"width": width, "height": 1400})
        try:
            with _Action(pid) as act:
                page.goto(f"{url}/trajectory?trajectory={target.trajectory_id}&step={step0}")
                wait_step_drawn(page, step0)
            out["open_trajectory"].append(act)
            for i in range(1, nexts + 1):
                with _Action(pid) as act:
                    page.get_by_role("button", name="Next").first.click()
                    wait_step_drawn(page, step0 + i)
                out["next_step"].append(act)
            for name in ("routing_page", "routing_page_revisit"):
                with _Action(pid) as act:
                    page.get_by_role("link", name="Routing").first.click()
                    wait_routing_drawn(page)
                out[name].append(act)
                page.get_by_role("link", name="Trajectory").first.click()
                wait_step_drawn(page, step0 + nexts)
        finally:
            page.close()
    return out


def _warm_up(browser: Any, url: str, trajectory_id: str, width: int) -> None:
    """Open another trajectory's first steps in a tab of its own (untimed), then close it."""
    page = browser.new_page(viewport={"width": width, "height": 1400})
    try:
        page.goto(f"{url}/trajectory?trajectory={trajectory_id}&step=1")
        wait_step_drawn(page, 1)
    finally:
        page.close()


def _floor(browser: Any, url: str, server_pid: int, width: int) -> _Action:
    """One first load of the floor page in a fresh browser context."""
    from horizonlens.bench.pages import FLOOR

    context = browser.new_context(viewport={"width": width, "height": 1400})
    try:
        page = context.new_page()
        with _Action(server_pid) as act:
            page.goto(url + FLOOR.path)
            FLOOR.ready(page)
            wait_settled(page)
    finally:
        context.close()
    return act


def measure_apps(targets: dict[str, AppTarget], nexts: int = 5, repeats: int = 3, width: int = 1500,
                 executable: str = CHROMIUM) -> dict[str, dict[str, Any]]:
    """Time each app in headless Chromium, the targets interleaved per repeat so machine noise hits them alike.

    Every repeat starts a fresh server per target, so first visits are cold (nothing in Streamlit's caches)
    while the replay is cached on disk. Per target and action: wall seconds (median, max, samples) over
    all repeats, and the median CPU seconds the server and the browser spent:
    - `open_trajectory_s`: navigation to the Trajectory page until the step and its routing chart are drawn;
    - `next_step_s`: a click on "Next" until the next step and its routing chart are drawn;
    - `routing_page_s`: the first visit of the Routing page from the Trajectory page, until its step x expert
      heatmap is drawn; `routing_page_revisit_s`: the same with its caches warm.
    """
    samples: dict[str, dict[str, list[_Action]]] = {name: {k: [] for k in ACTIONS} for name in targets}
    floors: list[_Action] = []
    first = next(iter(targets.values()))
    with chromium(executable) as browser, serving(first.corpus, args=["--floor"]) as floor:
        for _ in range(repeats):
            floors.append(_floor(browser, floor.url, floor.process.pid, width))
            for name, target in targets.items():
                for action, acts in _session(browser, target, nexts, width).items():
                    samples[name][action] += acts
    floor_s = _stats(floors)
    return {name: {"trajectory": targets[name].trajectory_id, "start_step": targets[name].start_step,
                   "viewport_width": width, "floor_s": floor_s,
                   **{f"{action}_s": _stats(acts) for action, acts in per.items()},
                   "open_vs_floor": _stats(per["open_trajectory"])["median"] / floor_s["median"]}
            for name, per in samples.items()}


def measure_shape_app(corpus: Path, checkpoint: Path, trajectory_id: str | None = None, start_step: int | None = None,
                      nexts: int = 5, repeats: int = 3, width: int = 1500,
                      executable: str = CHROMIUM) -> dict[str, Any]:
    """`measure_apps` for one app; without `trajectory_id`, its replayed trajectory with the most tokens."""
    from horizonlens.model.loader import checkpoint_id as ckpt_id_of

    if trajectory_id is None:
        trajectory_id, start_step = pick_trajectory(corpus, ckpt_id_of(checkpoint))
    target = AppTarget(corpus, checkpoint, trajectory_id, 3 if start_step is None else start_step)
    return measure_apps({"app": target}, nexts, repeats, width, executable)["app"]


def _n_steps(corpus: Path, trajectory_id: str) -> int:
    from horizonlens.query.store import open_store

    store = open_store(corpus)
    try:
        return int(store.scalar("SELECT n_steps FROM trajectories WHERE trajectory_id = ?", [trajectory_id]))
    finally:
        store.close()


def bench_shape_app(names: list[str], data: Path, log: Callable[[str], None] = print, nexts: int = 5,
                    repeats: int = 3) -> dict[str, Any]:
    """Browser timings at each routing shape beside the bundled 4 x 16 checkpoint on the same trajectories.

    Two trajectories: the typical long sample one (`bench.shape.TARGET_TOKENS`), and one at the users' real
    horizon (at least `LONG_MIN_TOKENS` tokens and `LONG_STEPS` steps, near `LONG_TOKENS`), opened at its middle
    step. The corpora come from
    `bench.shape.prepare_shape_corpus` (built once under `data`); every app, the baselines and the floor are
    measured interleaved in one run. Ratios are shape / baseline medians on the same trajectory, and the open
    of each trajectory ÷ the floor's first load.
    """
    from horizonlens.bench.shape import LONG_MIN_TOKENS, LONG_STEPS, LONG_TOKENS, prepare_shape_corpus

    short = {name: prepare_shape_corpus(name, data, log=log) for name in ["sample", *names]}
    long = {name: prepare_shape_corpus(name, data, target=LONG_TOKENS, min_steps=LONG_STEPS,
                                       min_tokens=LONG_MIN_TOKENS, log=log) for name in ["sample", *names]}
    base, far = short["sample"], long["sample"]
    steps = _n_steps(far.corpus, far.trajectory_id)
    targets = {name: AppTarget(sc.corpus, sc.checkpoint, sc.trajectory_id, warmup=far.trajectory_id)
               for name, sc in short.items()}
    targets |= {f"{name} · long": AppTarget(sc.corpus, sc.checkpoint, sc.trajectory_id, start_step=steps // 2,
                                            warmup=base.trajectory_id) for name, sc in long.items()}
    log(f"  app timings in Chromium: {', '.join(targets)} ({repeats} x {nexts} Next), beside the floor")
    timed = measure_apps(targets, nexts, repeats)
    sample, sample_long = timed.pop("sample"), timed.pop("sample · long")
    return {"trajectory": base.trajectory_id, "tokens": base.tokens, "baseline": sample,
            "shapes": with_ratios({n: timed[n] for n in names}, sample),
            "long": {"trajectory": far.trajectory_id, "tokens": far.tokens, "steps": steps, "baseline": sample_long,
                     "shapes": with_ratios({n: timed[f"{n} · long"] for n in names}, sample_long)}}


def with_ratios(timed: dict[str, dict[str, Any]], base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Add `vs_baseline` (median / the baseline's median) to every action of every timed app."""
    for per in timed.values():
        for action in ACTIONS:
            key = f"{action}_s"
            per[key]["vs_baseline"] = per[key]["median"] / base[key]["median"]
    return timed


def report_lines(results: dict[str, Any]) -> list[str]:
    """Markdown rows for bench/RESULTS.md: p50 seconds per action, each shape beside the 4 x 16 baseline."""
    lines = ["App in Chromium at 1500 px, replay cached; p50 wall seconds (× the 4 x 16 baseline of the same run "
             "on the same trajectory), CPU seconds server + browser. *Open* is the first visit of the trajectory on "
             "a running server (another trajectory was opened first); × floor: ÷ the floor's first load in the same "
             "run (bench/pages.py). Goals at the real horizon: open ≤ 1.5× the floor, Next ≤ 0.3 s.", ""]
    sets = [(f"`{results['trajectory']}` ({results['tokens']:,} tokens)", results)]
    if results.get("long"):
        far = results["long"]
        sets.append((f"`{far['trajectory']}` ({far['tokens']:,} tokens, {far['steps']:,} steps; opened at step "
                     f"{far['steps'] // 2})", far))
    lines += ["| checkpoint | trajectory | Next step | Routing page (first visit) | Routing page (revisit) | "
              "open trajectory | open × floor |", "|---|---|---|---|---|---|---|"]

    def cell(stats: dict[str, Any]) -> str:
        ratio = f" ({stats['vs_baseline']:.2f}×)" if "vs_baseline" in stats else ""
        return (f"{stats['median']:.2f}{ratio}; cpu {stats['server_cpu_median']:.2f} + "
                f"{stats['browser_cpu_median']:.2f}")

    for label, part in sets:
        for name, per in [("sample 4 x 16 (baseline)", part["baseline"]), *part["shapes"].items()]:
            floor = f"{per['open_vs_floor']:.2f}× ({per['floor_s']['median']:.2f} s)" if "open_vs_floor" in per \
                else "—"
            lines.append(f"| {name} | {label} | " + " | ".join(cell(per[f"{a}_s"]) for a in
                                                              ("next_step", "routing_page", "routing_page_revisit",
                                                               "open_trajectory")) + f" | {floor} |")
    return lines
