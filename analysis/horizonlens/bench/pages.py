"""Every page in headless Chromium, each beside the floor: a hello-world page served the same way, in the same run.

The floor is `horizonlens serve --floor` (app/floor.py): the same server, flags and middleware as the app, with a
page that only says hello. Whatever a page costs beyond it is the page's own work. Each repeat opens the floor
and then every page, round-robin in fresh browser tabs (new Streamlit sessions), so machine noise hits them alike.
Per page: the median first load, its `ratio` to the floor's median first load (`floor_s`), and each
interaction's time over the floor's own rerun (`over_floor_rerun_s`, a click on its button). A second baseline,
the floor with one small Plotly chart (`chart_floor_s`, `chart_ratio`), says how much of a page with charts is
the frontend's Plotly bundle, which the browser loads and runs for the first chart of any page.

Beside the wall times, every load records where its time went (`bench.breakdown`): the document and the
frontend's scripts until the websocket opens, the server's script runs, the rendering after the last run, the
bytes over the websocket, and what is on the settled page (elements, widgets, Plotly figures and their size).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from horizonlens.bench.breakdown import LOAD_PROBE, load_breakdown, median_breakdown
from horizonlens.bench.browser import CHROMIUM, VIEWPORT, chromium, serving, timed_interaction, timed_load
from horizonlens.bench.timing import cpu_seconds


def _choose(page: Any, label: str, option: str) -> Callable[[], None]:
    """Open a selectbox/multiselect by its label (untimed) and return the click on one option (timed)."""
    page.get_by_role("combobox", name=label, exact=True).first.click()
    target = page.get_by_role("option", name=option, exact=True).first
    target.wait_for(timeout=30_000)
    return target.click


def _charts(n: int) -> Callable[[Any], None]:
    def wait(page: Any) -> None:
        # charts drawn, not SVG layers: Plotly draws three .main-svg per chart, so counting those fired at n/3
        page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].filter("
                               f"e => e.querySelector('.main-svg')).length >= {n}", timeout=180_000)
    return wait


def _tables(n: int) -> Callable[[Any], None]:
    """`n` tables drawn: their grids' canvases are on the page (the grid's frontend chunk loaded and run)."""
    def wait(page: Any) -> None:
        page.locator("[data-testid=stDataFrame]").nth(n - 1).locator("canvas").first.wait_for(timeout=180_000)
    return wait


def _text(text: str) -> Callable[[Any], None]:
    def wait(page: Any) -> None:
        page.get_by_text(text, exact=False).first.wait_for(timeout=180_000)
    return wait


@dataclass(frozen=True)
class PageBench:
    """One page: where it is, what shows it is ready, and the interaction timed on it."""

    name: str
    path: str  # relative URL; {tid} is the trajectory to open
    ready: Callable[[Any], None]
    interaction: str  # what the interaction is, in words (for the report)
    interact: Callable[[Any], float] | None  # runs the interaction on a ready page; its seconds


def _explore_filter(page: Any) -> float:
    return timed_interaction(page, _choose(page, "Domain", "search"))


def _next_step(page: Any) -> float:
    heading = page.get_by_role("heading", name="Step", exact=False).first
    before = heading.inner_text()

    def changed(p: Any) -> None:
        p.wait_for_function("(b) => { const h = [...document.querySelectorAll('h3')].find(e => "
                            "e.innerText.startsWith('Step ')); return h && h.innerText !== b; }", arg=before,
                            timeout=180_000)

    return timed_interaction(page, page.get_by_role("button", name="Next ▶", exact=True).click, changed)


def _facet(page: Any) -> float:
    return timed_interaction(page, _choose(page, "Facet by", "domain"))


def _compare_toggle(page: Any) -> float:
    return timed_interaction(page, page.get_by_text("Only steps where the actions differ").first.click,
                             effect="() => !!document.querySelector('.st-key-cmp_only_diff input:checked')")


def _sql_run(page: Any) -> float:
    return timed_interaction(page, page.get_by_role("button", name="Run", exact=True).click,
                             lambda p: p.get_by_text(" rows", exact=False).first.wait_for(timeout=180_000))


def _other_option(label: str) -> Callable[[Any], float]:
    """Pick another option of the selectbox `label` (NaN when it has only one)."""
    def interact(page: Any) -> float:
        box = page.get_by_role("combobox", name=label, exact=True)
        if not box.count():
            return float("nan")
        current = box.first.input_value() if box.first.evaluate("e => e.tagName") == "INPUT" else ""
        # in view first: a click that has to scroll a long page first lands but leaves the list closed
        box.first.scroll_into_view_if_needed()
        box.first.click()
        options = page.get_by_role("option")
        options.first.wait_for(timeout=30_000)
        others = [o for o in options.all() if o.inner_text().strip() != current]
        if not others:
            page.keyboard.press("Escape")
            return float("nan")
        return timed_interaction(page, others[0].click)
    return interact


def _floor_rerun(page: Any) -> float:
    """Click the floor's button: the rerun that follows shows one more rerun counted."""
    runs = int(page.get_by_text("Reruns: ").first.inner_text().split(":")[1])
    shown = f"() => document.body.innerText.includes('Reruns: {runs + 1}')"
    return timed_interaction(page, page.get_by_role("button", name="Rerun", exact=True).click, effect=shown)


FLOOR = PageBench("floor", "/", _text("Hello, world"), "rerun (a button)", _floor_rerun)
# The floor with one small Plotly chart: what a page's first chart costs before the page's own work.
CHART_FLOOR = PageBench("floor_chart", "/?chart=1", _charts(1), "rerun (a button)", _floor_rerun)
BASELINES = (FLOOR, CHART_FLOOR)
# The floor with one of each part a page is built from (app/floor.py, `?with=`): what each costs beside the floor,
# the budget a page spends (`measure_pages(parts=True)`; the bundled corpus's bench run measures them).
# Each part is ready when its own content is on screen (its frontend chunk loaded and run), not the floor's title.
_PART_READY = {"dataframe": _tables(1), "table": _text("read_file(path=9)"),
               "code": _text("read_file(path='lib/x.py')"), "markdown": _text("step 19"), "widgets": _text("Choice 9"),
               "sidebar": _text("Horizon Lens"), "metrics": _text("Figure 3")}
FLOOR_PARTS = tuple(PageBench(f"floor+{part}", f"/?with={part}", ready, "", None)
                    for part, ready in _PART_READY.items())
PAGES = (
    PageBench("explore", "/", _charts(2), "select a domain in the trajectory filter", _explore_filter),
    PageBench("trajectory", "/trajectory?trajectory={tid}&step=1", _text("Step 1"), "Next (one step)", _next_step),
    PageBench("routing", "/routing?trajectory={tid}", _text("Expert routing"), "another replayed trajectory",
              _other_option("Trajectory")),  # NaN when fewer than two are replayed
    PageBench("compounding", "/compounding", _charts(2), "facet by domain", _facet),  # the Horizons tab
    # the decision layer's pages: modes (computed once per corpus state, then read) and the Run sets tab
    # both draw no chart on a first load: the modes and the first mode's examples; the statistics and the grid
    PageBench("failure_modes", "/failure_modes", _tables(2), "another mode's examples",
              _other_option("Mode")),
    PageBench("run_sets", "/compare?cmp_tab=Run+sets", _tables(1), "run set B: another agent",
              _other_option("B: agent")),
    PageBench("compare", "/compare?trajectory={tid}", _tables(1), "only differing steps", _compare_toggle),
    PageBench("sql", "/sql", _text("Row cap"), "run the default query", _sql_run),
)


def _sample(browser: Any, url: str, bench: PageBench, tid: str, interactions: int, server_pid: int,
            into: dict[str, list[Any]]) -> None:
    """One fresh session of one page: its timed first load (with the breakdown), then its interactions."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.add_init_script(LOAD_PROBE)
    try:
        with load_breakdown(page, server_pid) as parts:
            into["loads"].append(timed_load(page, url + bench.path.format(tid=tid), bench.ready))
        into["breakdowns"].append(parts)
        if bench.interact is not None:
            for _ in range(interactions):
                before = cpu_seconds(server_pid)
                into["acts"].append(bench.interact(page))
                after = cpu_seconds(server_pid)
                into["act_cpu"].append((after[0] - before[0], after[1] - before[1]))
    except Exception as exc:  # noqa: BLE001 - a sample that times out is reported, the others count
        into["failures"].append(str(exc).splitlines()[0][:300])
    finally:
        context.close()


def _summary(bench: PageBench, got: dict[str, list[Any]]) -> dict[str, Any]:
    loads, acts = got["loads"], [a for a in got["acts"] if a == a]  # NaN: the page had nothing to interact with
    cpu = [c for a, c in zip(got["acts"], got["act_cpu"], strict=True) if a == a]
    return {"first_load_s": statistics.median(loads) if loads else None, "cold_s": loads[0] if loads else None,
            "interaction_s": statistics.median(acts) if acts else None, "interaction": bench.interaction,
            "loads_s": loads, "interactions_s": acts, "failures": got["failures"],
            "breakdown": median_breakdown(got["breakdowns"]),
            "interaction_cpu_s": {"server": statistics.median(c[0] for c in cpu),
                                  "browser": statistics.median(c[1] for c in cpu)} if cpu else None}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _cpu(row: dict[str, Any]) -> float | None:
    """CPU seconds of a first load, the app server's and the browser's together (None if not measured)."""
    b = row.get("breakdown") or {}
    return b["server_cpu_s"] + b["browser_cpu_s"] if "server_cpu_s" in b and "browser_cpu_s" in b else None


def with_floor(timed: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each page's row with `floor_s`, `ratio` (first load ÷ floor), the floor's rerun and the interaction over it.

    Also `chart_floor_s` and `chart_ratio`: the same against the floor with one chart, when it was measured; and
    `cpu_ratio`: the CPU seconds of a first load (server and browser) ÷ the floor's, which a busy machine
    stretches less than wall time.
    """
    floor = timed.get(FLOOR.name) or {}
    floor_s, rerun_s = floor.get("first_load_s"), floor.get("interaction_s")
    chart_s = (timed.get(CHART_FLOOR.name) or {}).get("first_load_s")
    for name, row in timed.items():
        if name in (b.name for b in BASELINES):
            continue
        row["floor_s"], row["floor_rerun_s"] = floor_s, rerun_s
        row["ratio"] = _ratio(row["first_load_s"], floor_s)
        row["cpu_ratio"] = _ratio(_cpu(row), _cpu(floor))
        if chart_s is not None:
            row["chart_floor_s"], row["chart_ratio"] = chart_s, _ratio(row["first_load_s"], chart_s)
        row["over_floor_rerun_s"] = (row["interaction_s"] - rerun_s
                                     if row["interaction_s"] is not None and rerun_s is not None else None)
    return timed


def measure_pages(corpus: Path, checkpoint: Path | None, trajectory_id: str, repeats: int = 3,
                  interactions: int = 3, executable: str = CHROMIUM, pages: tuple[PageBench, ...] = PAGES,
                  browser: Any = None, parts: bool = False) -> dict[str, dict[str, Any]]:
    """Per page and the floor: median first load and interaction (seconds), cold first load, samples, breakdown.

    Every page's row also has its ratio to the floor (`with_floor`). The app and the floor are served side by
    side for the whole run, and each repeat times the floor and then every page.
    `browser`: a Playwright browser to use (the tests have one); by default Chromium is started here.
    `parts`: also the floor with each of `FLOOR_PARTS`, served by the floor's server (rows `floor+PART`).
    """
    if browser is None:
        with chromium(executable) as own:
            return measure_pages(corpus, checkpoint, trajectory_id, repeats, interactions, executable, pages, own,
                                 parts)
    floors = (*BASELINES, *(FLOOR_PARTS if parts else ()))
    every = (*floors, *pages)
    got: dict[str, dict[str, list[Any]]] = {b.name: {"loads": [], "acts": [], "act_cpu": [], "failures": [],
                                                     "breakdowns": []} for b in every}
    with serving(corpus, checkpoint) as app, serving(corpus, args=["--floor"]) as floor:
        for _ in range(repeats):
            for bench in every:
                served = floor if bench in floors else app
                n = interactions if bench.name in ("trajectory", FLOOR.name) else 1
                _sample(browser, served.url, bench, trajectory_id, n, served.process.pid, got[bench.name])
    return with_floor({b.name: _summary(b, got[b.name]) for b in every})


FIRST_LOAD_GOAL = 1.5  # a page's first load, in floors
RERUN_GOAL_S = 0.3  # an interaction's seconds beyond the floor's own rerun


def _corpus_label(row: dict[str, Any]) -> str:
    n = f"{int(row['trajectories']):,}"
    return f"{n} (bundled)" if row.get("corpus") == "bundled" else n


def _goal(name: str, row: dict[str, Any]) -> str:
    """Whether a page is within the floor goals: first load ≤ 1.5 floors, interaction ≤ 0.3 s over the floor's.

    A part of a page (`floor+PART`) is a cost, not a page: no goal.
    """
    if row.get("ratio") is None or name.startswith("floor+"):
        return ""
    over = row.get("over_floor_rerun_s")
    ok = row["ratio"] <= FIRST_LOAD_GOAL and (over is None or over <= RERUN_GOAL_S)
    return "met" if ok else "missed"


def report_lines(pages: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The RESULTS.md sections of the page timings: each page beside the floor, and where its first load went."""
    from horizonlens.figures.formatting import seconds

    if not pages:
        return []
    floors = {_corpus_label(r): r for r in pages.get(FLOOR.name, [])}
    lines = ["", "## Pages in headless Chromium, beside the floor", "",
             "The floor is a hello-world page served by the same server with the same flags (`horizonlens serve "
             "--floor`), timed in the same run: each repeat opens the floor and then every page, each in a fresh "
             "browser context (a new Streamlit session, nothing cached in the browser). A first load runs from "
             "navigation to a settled page (script done, no skeleton or stale element, the page's content on "
             "screen), median of the repeats; *cold* is the first load after the server started. Interactions run "
             "from the click to the end of the rerun it starts; the floor's is a click on its button. Goals: first "
             f"load ≤ {FIRST_LOAD_GOAL:g}× the floor, interaction ≤ {RERUN_GOAL_S:g} s over the floor's rerun.",
             " The floor with one chart is the same page with one small Plotly chart: the frontend's Plotly bundle "
             "is loaded and run for the first chart of any page, so a page with charts is also shown as a multiple "
             "of that. *CPU × floor*: the CPU seconds of the load (app server and browser) ÷ the floor's, which a "
             "busy machine stretches less than wall time.", "",
             "| page | trajectories | first load | floor | × floor | × floor with one chart | CPU × floor | "
             "cold first load | interaction | interaction time | floor's rerun | over the floor's rerun | goals |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, rows in pages.items():
        if name in (b.name for b in BASELINES):
            continue
        for row in rows:
            failed = len(row.get("failures") or [])
            note = f" ({failed} sample(s) timed out, left out)" if failed else ""
            ratio = "—" if row.get("ratio") is None else f"{row['ratio']:.2f}×"
            chart = "—" if row.get("chart_ratio") is None else f"{row['chart_ratio']:.2f}×"
            cpu = "—" if row.get("cpu_ratio") is None else f"{row['cpu_ratio']:.2f}×"
            lines.append(f"| {name} | {_corpus_label(row)} | {seconds(row['first_load_s'])} | "
                         f"{seconds(row.get('floor_s'))} | {ratio} | {chart} | {cpu} | {seconds(row.get('cold_s'))} | "
                         f"{row.get('interaction', '')}{note} | {seconds(row.get('interaction_s'))} | "
                         f"{seconds(row.get('floor_rerun_s'))} | {seconds(row.get('over_floor_rerun_s'))} | "
                         f"{_goal(name, row)} |")
    lines += ["", "Where each first load went (medians; `bench/breakdown.py`): *document* = navigation until the "
              "websocket is open, *session* = until the first script run starts, *script runs* = the first run's "
              "start to the last run's end as the browser sees them (fragments included), *render* = after the "
              "last run until settled (lazy frontend chunks such as Plotly's, the figures drawn); what the settled "
              "page holds; the frontend's scripts fetched (uncompressed) and the CPU seconds of the app server and "
              "of the browser during the load.", "",
              "| page | trajectories | total | document | session | script runs | render | runs | websocket | "
              "elements | widgets | figures (traces) | figure JSON | frontend scripts | server CPU | browser CPU |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, rows in pages.items():
        for row in rows:
            b = row.get("breakdown")
            if not b:
                continue
            lines.append(f"| {name} | {_corpus_label(row)} | {seconds(b['total_s'])} | {seconds(b['document_s'])} | "
                         f"{seconds(b['to_run_s'])} | {seconds(b['runs_s'])} | {seconds(b['render_s'])} | "
                         f"{b['runs']:g} | {b['ws_kb']:,.0f} KB | {b['elements']:g} | {b['widgets']:g} | "
                         f"{b['figures']:g} ({b['traces']:g}) | {b['figure_kb']:,.0f} KB | "
                         f"{b['script_kb'] / 1024:,.1f} MB | {seconds(b.get('server_cpu_s'))} | "
                         f"{seconds(b.get('browser_cpu_s'))} |")
    if not floors:
        lines += ["", "No floor was measured in this run."]
    return lines
