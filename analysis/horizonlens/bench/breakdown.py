"""Where a page's first load spends its time, measured in the browser that loads it.

`LOAD_PROBE` is added to a fresh tab before the page's own scripts run. It wraps the WebSocket the Streamlit
frontend opens (counting the bytes and messages the server sends) and watches the app's run state, so each
load splits into:

- `document_s`: navigation until the websocket is open (the HTML and the frontend's scripts: the floor pays it
  too);
- `to_run_s`: websocket open until the first script run starts (the server sets up the session);
- `runs_s`: the first run's start to the last run's end, fragments included (`runs`: how many ran), i.e. the
  server's script time as the browser sees it, deltas arriving as they are made;
- `render_s`: the last run's end until the page has settled (lazy frontend chunks such as Plotly's, layout,
  the figures drawn).

It also records what the settled page holds: elements, widgets, Plotly figures and the size of their JSON
(`figure_kb`), the websocket's bytes (`ws_kb`), the frontend scripts fetched (`script_kb`, uncompressed), and
the CPU seconds the app server and the browser spent on the load.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from horizonlens.bench.shape_app import cpu_seconds

LOAD_PROBE = """(() => {
  const probe = window.__hlLoad = {wsOpen: null, wsBytes: 0, wsMessages: 0, runs: []};
  const Native = window.WebSocket;
  function Probed(...args) {
    const ws = new Native(...args);
    ws.addEventListener('open', () => { probe.wsOpen = performance.now(); });
    ws.addEventListener('message', (e) => {
      const d = e.data;
      probe.wsMessages += 1;
      probe.wsBytes += (d && (d.byteLength ?? d.size ?? d.length)) || 0;
    });
    return ws;
  }
  Probed.prototype = Native.prototype;
  for (const k of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) Probed[k] = Native[k];
  window.WebSocket = Probed;
  new MutationObserver((records) => {
    for (const r of records) {
      const now = r.target.getAttribute('data-test-script-state');
      const last = probe.runs[probe.runs.length - 1];
      if (now === 'running' && r.oldValue !== 'running') probe.runs.push([performance.now(), null]);
      else if (now !== 'running' && r.oldValue === 'running') {
        if (last && last[1] === null) last[1] = performance.now(); else probe.runs.push([null, performance.now()]);
      }
    }
  }).observe(document, {subtree: true, attributes: true, attributeOldValue: true,
                        attributeFilter: ['data-test-script-state']});
})();"""

# Read once the page has settled: what it holds, and the probe's records (milliseconds since navigation).
READ_PROBE = """() => {
  const p = window.__hlLoad || {runs: []};
  const figs = [...document.querySelectorAll('.js-plotly-plot')];
  const size = (g) => { try { return JSON.stringify(g.data).length + JSON.stringify(g.layout).length; }
                        catch (e) { return 0; } };
  const scripts = performance.getEntriesByType('resource').filter(r => r.initiatorType === 'script'
                                                                  || r.name.endsWith('.js'));
  return {wsOpen: p.wsOpen, runs: p.runs, wsBytes: p.wsBytes, wsMessages: p.wsMessages,
          now: performance.now(),
          elements: document.querySelectorAll('[data-testid=stElementContainer]').length,
          widgets: document.querySelectorAll('input, button, textarea, [role=slider], [role=combobox]').length,
          figures: figs.length,
          traces: figs.reduce((n, g) => n + ((g.data && g.data.length) || 0), 0),
          figureBytes: figs.reduce((n, g) => n + size(g), 0),
          scriptBytes: scripts.reduce((n, r) => n + (r.decodedBodySize || 0), 0),
          scripts: scripts.length};
}"""

FIELDS = ("total_s", "document_s", "to_run_s", "runs_s", "render_s", "runs", "ws_kb", "ws_messages", "elements",
          "widgets", "figures", "traces", "figure_kb", "script_kb", "server_cpu_s", "browser_cpu_s")


def parts_of(probe: dict[str, Any], total_s: float) -> dict[str, Any]:
    """The breakdown of one load from the probe's records and the load's wall seconds (navigation to settled).

    The probe's clock starts at navigation, a moment after the wall clock does, so the rendering time is what is
    left of the wall time after the last run ended (the probe's end, read at settling, is at most that).
    """
    runs = [r for r in probe.get("runs", []) if r[1] is not None]
    ws_open = (probe.get("wsOpen") or 0) / 1000
    first = next((r[0] for r in runs if r[0] is not None), None)
    start = ws_open if first is None else first / 1000
    end = runs[-1][1] / 1000 if runs else ws_open
    return {"total_s": total_s, "document_s": ws_open, "to_run_s": max(0.0, start - ws_open),
            "runs_s": max(0.0, end - start), "render_s": max(0.0, total_s - end), "runs": len(runs),
            "ws_kb": probe.get("wsBytes", 0) / 1024, "ws_messages": probe.get("wsMessages", 0),
            "elements": probe.get("elements", 0), "widgets": probe.get("widgets", 0),
            "figures": probe.get("figures", 0), "traces": probe.get("traces", 0),
            "figure_kb": probe.get("figureBytes", 0) / 1024, "script_kb": probe.get("scriptBytes", 0) / 1024}


@contextmanager
def load_breakdown(page: Any, server_pid: int) -> Iterator[dict[str, Any]]:
    """Around a timed load of `page` (whose tab has LOAD_PROBE): fills the yielded dict with its breakdown.

    The CPU seconds are read outside the timed block's own clock, before it starts and after it ends.
    """
    import time

    parts: dict[str, Any] = {}
    cpu0 = cpu_seconds(server_pid)
    started = time.perf_counter()
    yield parts
    total = time.perf_counter() - started
    cpu1 = cpu_seconds(server_pid)
    parts.update(parts_of(page.evaluate(READ_PROBE), total))
    parts["server_cpu_s"], parts["browser_cpu_s"] = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]


def median_breakdown(samples: list[dict[str, Any]]) -> dict[str, float] | None:
    """Each field's median over the loads of a page (None without a load)."""
    if not samples:
        return None
    return {f: statistics.median(s[f] for s in samples) for f in FIELDS if all(f in s for s in samples)}
