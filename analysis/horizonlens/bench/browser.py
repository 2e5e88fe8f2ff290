"""The app served for a test or a benchmark, and its timings in headless Chromium.

`serving()` is the one way code here starts the app: `horizonlens serve` on a free port, ready when its health
check answers, stopped with SIGTERM when the block ends (and killed, with an error, if it does not stop).
Timings wait for rendered content and for Streamlit to finish the run, never for a fixed time.

`measure_pages` times every page from navigation to a settled page, and one interaction each. A page is
*settled* when Streamlit's script (or fragment) run is over, no element is a loading skeleton or marked
stale, and the page's own content is on screen (its figures, its table, its step). An interaction is timed
from the click to the end of the rerun it starts: a MutationObserver in the page records when the app starts
and stops running, so a fast rerun is never missed and a slow one never cut short. Each page is loaded
`repeats` times in a fresh browser tab (a new Streamlit session): the first load after the server starts
fills the query cache (`cold_s`); `first_load_s` and `interaction_s` are medians.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READY = ("() => { const a = document.querySelector('[data-testid=stApp]'); return a && "
         "a.getAttribute('data-test-script-state') === 'notRunning' && "
         "!document.querySelector('[data-testid=stSkeleton]'); }")
SETTLED = ("() => { const a = document.querySelector('[data-testid=stApp]'); return !!a && "
           "a.getAttribute('data-test-script-state') === 'notRunning' && "
           "!document.querySelector('[data-testid=stSkeleton]') && !document.querySelector('[data-stale=true]'); }")
# Records when the next run starts and ends (fragment reruns included).
WATCH = """() => {
  const app = document.querySelector('[data-testid=stApp]');
  window.__hlRun = {started: false, ended: false};
  if (window.__hlObserver) window.__hlObserver.disconnect();
  // A fast run can start and end before the callback runs: the records' old values still show it started.
  window.__hlObserver = new MutationObserver((records) => {
    const state = app.getAttribute('data-test-script-state');
    if (state === 'running' || records.some(r => r.oldValue === 'running')) window.__hlRun.started = true;
    if (window.__hlRun.started && state !== 'running') window.__hlRun.ended = true;
  });
  window.__hlObserver.observe(app, {attributes: true, attributeOldValue: true,
                                    attributeFilter: ['data-test-script-state']});
}"""
RUN_OVER = f"() => window.__hlRun && window.__hlRun.ended && ({SETTLED})()"
CHROMIUM = os.environ.get("HORIZONLENS_CHROMIUM", "/usr/bin/chromium")  # Debian's package: never a downloaded one
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
VIEWPORT: Any = {"width": 1440, "height": 1200}
STOP_TIMEOUT_S = 30.0  # a server that has not stopped this long after SIGTERM is killed and reported


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a server started by a benchmark or test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def chromium(executable: str = CHROMIUM) -> Iterator[Any]:
    """Headless Chromium driven by Playwright for the duration of the block; always closed when it ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Served:
    """A running app: its URL and process; `stopped_after_s` is set once SIGTERM has stopped it."""

    url: str
    process: subprocess.Popen[bytes]
    stopped_after_s: float | None = None


@contextmanager
def serving(corpus: Path, checkpoint: Path | None = None, env: Mapping[str, str] | None = None,
            start_timeout_s: float = 180.0, args: Sequence[str] = ()) -> Iterator[Served]:
    """`horizonlens serve` for the duration of the block; always stopped when the block ends.

    The server is the `serve` process itself (it execs Streamlit), so SIGTERM reaches it. Its output goes to
    a temporary file and is quoted if it fails to start or to stop. `args`: more `serve` options (`--auth FILE`,
    another `--corpus`, `--watch DIR` …).
    """
    port = free_port()
    cmd = [sys.executable, "-m", "horizonlens.cli", "serve", "--corpus", str(corpus), "--port", str(port), *args]
    if checkpoint:
        cmd += ["--checkpoint", str(checkpoint)]
    full_env = dict(os.environ, HORIZONLENS_CHECKPOINT=str(checkpoint) if checkpoint else "", **(env or {}))
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        served = Served(url=f"http://127.0.0.1:{port}", process=proc)
        try:
            _wait_healthy(served, start_timeout_s, log)
            yield served
        finally:
            served.stopped_after_s = _stop(proc, log)


def _tail(log: Any) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-3000:]


def _wait_healthy(served: Served, timeout_s: float, log: Any) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(f"the server exited with {served.process.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{served.url}/_stcore/health", timeout=2) as resp:
                if resp.read().decode().strip() == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.25)  # polling interval of the health check, not a wait for the app
    raise RuntimeError(f"no health answer from {served.url} within {timeout_s:.0f} s:\n{_tail(log)}")


def _stop(proc: subprocess.Popen[bytes], log: Any) -> float | None:
    """SIGTERM, then wait; kill and raise if it does not stop. Seconds it took to stop (None if it had exited)."""
    if proc.poll() is not None:
        return None
    started = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the server did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM; killed it:\n"
                           f"{_tail(log)}") from None
    return time.perf_counter() - started


def wait_ready(page: Any, timeout_ms: int = 120_000) -> None:
    """Wait until Streamlit has finished running the script and no placeholder is left.

    Call it only after waiting for content the action must produce: right after a click the previous run may
    still look finished.
    """
    page.wait_for_function(READY, timeout=timeout_ms)


def step_heading(page: Any, step: int) -> Any:
    """The Trajectory page's heading of one step ("Step 4 · agent · …"): appears once that step has rendered."""
    return page.get_by_role("heading", name=re.compile(rf"^Step {step}\b")).first


def settle(page: Any, timeout_ms: int = 180_000) -> None:
    """Wait until the app is not running and nothing on the page is a skeleton or stale."""
    page.wait_for_function(SETTLED, timeout=timeout_ms)


def timed_load(page: Any, url: str, ready: Callable[[Any], None]) -> float:
    """Seconds from navigation until the page has settled with its own content on screen."""
    started = time.perf_counter()
    page.goto(url)
    ready(page)
    settle(page)
    return time.perf_counter() - started


def timed_interaction(page: Any, action: Callable[[], None], then: Callable[[Any], None] | None = None,
                      timeout_ms: int = 180_000, effect: str | None = None) -> float:
    """Seconds from `action` (a click) to the end of the rerun it starts (and `then`, a content check).

    `effect`: a JavaScript predicate that is true once the action has taken effect. A fragment rerun of a few
    milliseconds can start and end within one render, so the app's run state never changes and no run is seen;
    the interaction then ends when its effect is on a settled page.
    """
    page.evaluate(WATCH)
    started = time.perf_counter()
    action()
    over = RUN_OVER if effect is None else f"() => ({RUN_OVER})() || (({effect})() && ({SETTLED})())"
    page.wait_for_function(over, timeout=timeout_ms, polling=10)
    if then:
        then(page)
    return time.perf_counter() - started


def _choose(page: Any, label: str, option: str) -> Callable[[], None]:
    """Open a selectbox/multiselect by its label (untimed) and return the click on one option (timed)."""
    page.get_by_role("combobox", name=label, exact=True).first.click()
    target = page.get_by_role("option", name=option, exact=True).first
    target.wait_for(timeout=30_000)
    return target.click


def _charts(n: int) -> Callable[[Any], None]:
    def wait(page: Any) -> None:
        page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {n}",
                               timeout=180_000)
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


def _routing_trajectory(page: Any) -> float:
    """Switch the routing view to another replayed trajectory (NaN when fewer than two are replayed)."""
    box = page.get_by_role("combobox", name="Trajectory", exact=True)
    if not box.count():
        return float("nan")
    current = box.first.input_value() if box.first.evaluate("e => e.tagName") == "INPUT" else ""
    box.first.click()
    options = page.get_by_role("option")
    options.first.wait_for(timeout=30_000)
    others = [o for o in options.all() if o.inner_text().strip() != current]
    if not others:
        page.keyboard.press("Escape")
        return float("nan")
    return timed_interaction(page, others[0].click)


PAGES = (
    PageBench("explore", "/", _charts(2), "select a domain in the trajectory filter", _explore_filter),
    PageBench("trajectory", "/trajectory?trajectory={tid}&step=1", _text("Step 1"), "Next (one step)", _next_step),
    PageBench("routing", "/routing?trajectory={tid}", _text("Expert routing"), "another replayed trajectory",
              _routing_trajectory),
    PageBench("compounding", "/compounding", _charts(7), "facet by domain", _facet),
    PageBench("compare", "/compare?trajectory={tid}", _text("Trajectory B"), "only differing steps", _compare_toggle),
    PageBench("sql", "/sql", _text("Row cap"), "run the default query", _sql_run),
)


def measure_pages(corpus: Path, checkpoint: Path | None, trajectory_id: str, repeats: int = 3,
                  interactions: int = 3, executable: str = CHROMIUM, pages: tuple[PageBench, ...] = PAGES,
                  browser: Any = None) -> dict[str, dict[str, Any]]:
    """Per page: median first load and interaction (seconds), the cold first load, and every sample.

    `browser`: a Playwright browser to use (the tests have one); by default Chromium is started here.
    """
    if browser is None:
        with chromium(executable) as own:
            return measure_pages(corpus, checkpoint, trajectory_id, repeats, interactions, executable, pages, own)
    out: dict[str, dict[str, Any]] = {}
    with serving(corpus, checkpoint) as app:
        url = app.url
        for bench in pages:
            loads: list[float] = []
            acts: list[float] = []
            failures: list[str] = []
            for _ in range(repeats):
                page = browser.new_page(viewport=VIEWPORT)
                try:
                    loads.append(timed_load(page, url + bench.path.format(tid=trajectory_id), bench.ready))
                    if bench.interact is not None:
                        n = interactions if bench.name == "trajectory" else 1
                        acts += [bench.interact(page) for _ in range(n)]
                except Exception as exc:  # noqa: BLE001 - a sample that times out is reported, the others count
                    failures.append(str(exc).splitlines()[0][:300])
                finally:
                    page.close()
            acts = [a for a in acts if a == a]  # NaN: the page had nothing to interact with
            out[bench.name] = {"first_load_s": statistics.median(loads) if loads else None,
                               "cold_s": loads[0] if loads else None,
                               "interaction_s": statistics.median(acts) if acts else None,
                               "interaction": bench.interaction, "loads_s": loads, "interactions_s": acts,
                               "failures": failures}
    return out
