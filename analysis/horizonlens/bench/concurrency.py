"""Many users at once: N headless-browser sessions against one server, each doing Explore → Trajectory → Next × 3.

For each number of sessions a fresh server is started (`serving()`), warmed by one untimed session, and then
N browser contexts (separate Streamlit sessions, one Chromium) run the same walk at the same time:

1. **explore**: open the Explore page, until its figures, table and counts are on a settled page;
2. **trajectory**: click a row of the table (session i clicks row i mod 10, so sessions open different runs),
   until the Trajectory page shows its step;
3. **next**: "Next ▶" three times, each until the next step's heading is on a settled page (the page opens a
   run at its first failed check; where that is its last step, "◀ Prev" is pressed instead: the same rerun).

Each interaction is timed from the click to the end of the rerun it started (the page's own run-state
observer, `bench.browser`), never by a fixed wait. Reported per level: p50 and p95 of each interaction over
all sessions, the server's RSS while all N sessions are open (and its peak), RSS per added session against the
warmed idle server, and every session's failure (a timeout, an exception shown by the page, a page error).
Ratios are to the one-session level of the same run.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from horizonlens.bench.browser import CHROMIUM_ARGS, RUN_OVER, SETTLED, VIEWPORT, WATCH, serving
from horizonlens.bench.timing import loaded_note, quantiles

LEVELS = (1, 4, 8, 16)
NEXTS = 3
ROWS_SHOWN = 10  # rows of the Explore table on screen without scrolling
ROW_PX, HEADER_PX = 35, 35  # the data grid's row and header heights
TIMEOUT_MS = 600_000  # a loaded two-core machine with 16 sessions is slow; a stuck session still ends


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB, from /proc."""
    text = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
    hwm = int(re.search(r"VmHWM:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
    return rss / 1024, hwm / 1024


def _step_shown(step: int | None) -> str:
    """A JavaScript predicate: the Trajectory page shows a step's heading (`step`, or any)."""
    test = "e.innerText.startsWith('Step ')" if step is None else f"/^Step {step}\\b/.test(e.innerText)"
    return f"() => [...document.querySelectorAll('h3')].some(e => {test})"


async def _timed(page: Any, action: Callable[[], Any], effect: str) -> float:
    """Seconds from `action` to the end of the rerun it starts, with its `effect` (a JS predicate) on screen.

    A fragment rerun can start and end within one render, so no run is seen: the effect on a settled page
    then ends the interaction (as `bench.browser.timed_interaction` does).
    """
    await page.evaluate(WATCH)
    started = time.perf_counter()
    await action()
    await page.wait_for_function(f"() => (({effect})()) && (({RUN_OVER})() || ({SETTLED})())", timeout=TIMEOUT_MS,
                                 polling=20)
    return time.perf_counter() - started


async def _walk(browser: Any, url: str, row: int, times: dict[str, list[float]]) -> tuple[Any, str | None]:
    """One session's walk; its browser context (kept open until memory is read) and its failure, if any."""
    context = await browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)  # clicks too: under load a button can take long to be ready
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)[:200]))
    where = "explore"
    try:
        started = time.perf_counter()
        await page.goto(url, timeout=TIMEOUT_MS)
        await page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2",
                                     timeout=TIMEOUT_MS)
        grid = page.locator("[data-testid=stDataFrame]").first
        await grid.wait_for(timeout=TIMEOUT_MS)
        await page.wait_for_function(SETTLED, timeout=TIMEOUT_MS)
        times["explore"].append(time.perf_counter() - started)

        where = "trajectory"
        await grid.scroll_into_view_if_needed()
        box = await grid.bounding_box()
        times["trajectory"].append(await _timed(
            page, lambda: page.mouse.click(box["x"] + 14, box["y"] + HEADER_PX + ROW_PX // 2 + row * ROW_PX),
            _step_shown(None)))
        heading = page.get_by_role("heading", name=re.compile(r"^Step \d+")).first
        for i in range(NEXTS):
            where = f"next {i + 1}"
            step = int(re.match(r"Step (\d+)", await heading.inner_text()).group(1))  # type: ignore[union-attr]
            # the page opens a run at its first failed check, which can be its last step: then step back instead
            button, target = page.get_by_role("button", name="Next ▶", exact=True), step + 1
            if await button.is_disabled():
                button, target = page.get_by_role("button", name="◀ Prev", exact=True), step - 1
            times["next"].append(await _timed(page, button.click, _step_shown(target)))
        if await page.locator("[data-testid=stException]").count():
            errors.append("the page shows an exception: " + (await page.locator(
                "[data-testid=stException]").first.inner_text())[:300])
    except Exception as exc:  # noqa: BLE001 - a failed session is reported with the others' figures
        errors.append(f"{where}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    return context, "; ".join(errors) or None


async def _level(corpus: Path, n: int, chromium: str, log: Callable[[str], None]) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    times: dict[str, list[float]] = {"explore": [], "trajectory": [], "next": []}
    with serving(corpus, checkpoint=None) as app:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                warm, failure = await _walk(browser, app.url, 0, {k: [] for k in times})  # opens the store, caches
                await warm.close()
                if failure:
                    raise RuntimeError(f"the warm-up session failed: {failure}")
                idle_rss, _ = _rss_mb(app.process.pid)
                load_before = os.getloadavg()[0]
                started = time.perf_counter()
                walks = await asyncio.gather(*[_walk(browser, app.url, i % ROWS_SHOWN, times) for i in range(n)])
                wall = time.perf_counter() - started
                await asyncio.sleep(0)  # memory is read with every session still open
                rss, hwm = _rss_mb(app.process.pid)
                load_after = os.getloadavg()[0]
                for context, _ in walks:
                    await context.close()
            finally:
                await browser.close()
    failures = [f for _, f in walks if f]
    log(f"  {n} session(s): {wall:.1f}s, RSS {rss:.0f} MB, {len(failures)} failure(s)")
    for failure in failures:
        log(f"    failed: {failure}")
    return {"sessions": n, "wall_s": round(wall, 2), "idle_rss_mb": round(idle_rss, 1), "rss_mb": round(rss, 1),
            "peak_rss_mb": round(hwm, 1), "rss_per_session_mb": round((rss - idle_rss) / n, 2),
            "load_average": [round(load_before, 1), round(load_after, 1)],
            **{k: quantiles(v) for k, v in times.items()}, "failures": failures}


def bench_concurrency(corpus: Path, levels: Sequence[int] = LEVELS, chromium: str = "/usr/bin/chromium",
                      log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every level of concurrent sessions on `corpus` (see the module docstring), with ratios to one session."""
    from horizonlens.query.store import open_store

    n_trajectories = int(open_store(corpus).scalar("SELECT count(*) FROM trajectories") or 0)
    out = [asyncio.run(_level(corpus, n, chromium, log)) for n in levels]
    base = next((r for r in out if r["sessions"] == 1), out[0])
    for r in out:
        for k in ("explore", "trajectory", "next"):
            if r[k]["p50"] and base[k]["p50"]:
                r[k]["p50_ratio_to_one_session"] = round(r[k]["p50"] / base[k]["p50"], 2)
    return {"trajectories": n_trajectories, "walk": f"Explore → Trajectory → Next × {NEXTS}", "levels": out}


def session_lines(results: dict[str, Any]) -> list[str]:
    """The many-users section of CONCURRENCY.md: one row per number of sessions, then every failure."""
    machine = results.get("machine", {})
    levels = results["levels"]
    lines = [f"## Many users at once: {results['walk']}, {results['trajectories']:,} trajectories", "",
             "Each level runs on a fresh server warmed by one untimed session; every figure is from one run of "
             "`horizonlens bench --scale none --sessions " + ",".join(str(r["sessions"]) for r in levels)
             + "`" + (f" started {results['started_at']}" if results.get("started_at") else "") + ". Ratios are to "
             "one session in the same run. Seconds from the click (or navigation) to the end of the rerun it "
             "started, with its content on screen.", "",
             f"Machine: {machine.get('cpus')} CPUs ({machine.get('cpu', '?')}), {machine.get('memory_gb', '?')} GB; "
             "the browsers run on the same machine as the server. The machine's 1-minute load average at the start "
             "and end of each level (other work included): " + "; ".join(
                 f"{r['sessions']}: {r['load_average'][0]}–{r['load_average'][1]}" for r in levels
                 if r.get("load_average")) + ". "
             + loaded_note(machine, [x for r in levels for x in r.get("load_average", [])]), "",
             "| sessions | explore p50 / p95 (s) | trajectory p50 / p95 (s) | next p50 / p95 (s) | next p50 × one "
             "session | server RSS (MB) | RSS per session (MB) | failures |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in levels:
        def cell(k: str, r: dict[str, Any] = r) -> str:
            return f"{r[k]['p50']} / {r[k]['p95']}" if r[k]["p50"] is not None else "—"
        ratio = r["next"].get("p50_ratio_to_one_session", "—")
        memory = f"{r['rss_mb']:.0f} (idle {r['idle_rss_mb']:.0f}, peak {r['peak_rss_mb']:.0f})"
        lines.append(f"| {r['sessions']} | {cell('explore')} | {cell('trajectory')} | {cell('next')} | {ratio} | "
                     f"{memory} | {r['rss_per_session_mb']:.1f} | {len(r['failures'])} |")
    failures = [f"- {r['sessions']} sessions: {f}" for r in levels for f in r["failures"]]
    if failures:
        lines += ["", "Failures:", *failures]
    return lines
