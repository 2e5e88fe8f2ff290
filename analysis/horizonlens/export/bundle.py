"""`horizonlens bundle`: one run as a single HTML file that opens from disk, for a colleague without a server.

The page holds the run's header, its error timeline, every step, its labels and, where the run was
replayed, the routing views (model signals along the horizon, step x expert load). Plotly is inlined, and
a Content-Security-Policy allows no request at all, so the page makes none. Every text of the run is
redacted (export/redact.py) and then HTML-escaped: nothing from a step can become markup or run as script.
Only this module's own scripts run (they carry the page's nonce).
"""

from __future__ import annotations

import html
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from horizonlens.errors import ExportError
from horizonlens.export.output import write_file_atomic
from horizonlens.export.redact import Redactor
from horizonlens.figures import routing as rfig
from horizonlens.metrics import model_side, replays, routing
from horizonlens.metrics.timeline import error_timeline, timeline_summary
from horizonlens.query.labels import labels_of
from horizonlens.query.store import CorpusStore
from horizonlens.storage.access import Permission, require

FIELD_MAX = 200_000  # characters of one field written into the page; the rest is cut with a note
OPEN_BELOW = 2_000  # fields shorter than this are shown open, longer ones folded
TIMELINE_TEXT = ("source", "tool", "error_label")  # untrusted text in the timeline's hover labels


@dataclass
class Bundle:
    """A written bundle: where, how big, and what it holds."""

    path: Path | None
    bytes: int
    steps: int
    labels: int
    replay_checkpoint: str | None  # the checkpoint whose routing views are in it, if any
    redacted: dict[str, int]


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


class _Page:
    """The bundle's HTML, built piece by piece; every run text passes `t()` (redact, cut, escape)."""

    def __init__(self, redactor: Redactor):
        self.redactor = redactor
        self.nonce = secrets.token_urlsafe(18)
        self.parts: list[str] = []
        self.figures = 0

    def t(self, value: object, limit: int = FIELD_MAX) -> str:
        text = self.redactor.text(str(value)) or ""
        note = ""
        if len(text) > limit:
            note = f"\n… [cut here: {len(text):,} characters in all]"
            text = text[:limit]
        return _e(text + note)

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def field(self, label: str, value: str | None) -> None:
        if value is None or value == "":
            return
        body = f"<pre>{self.t(value)}</pre>"
        if len(value) < OPEN_BELOW:
            self.add(f'<div class="field"><div class="label">{_e(label)}</div>{body}</div>')
        else:
            self.add(f'<details class="field"><summary class="label">{_e(label)} · {len(value):,} characters'
                     f"</summary>{body}</details>")

    def figure(self, fig: go.Figure, caption: str, on_click_step: bool = False) -> None:
        """A Plotly figure drawn by an inline script; its JSON has every '<' escaped, so text cannot end the script."""
        div = f"fig{self.figures}"
        self.figures += 1
        data = fig.to_json().replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        click = (f"document.getElementById('{div}').on('plotly_click', function (e) {{ if (e.points.length) "
                 f"location.hash = 'step-' + e.points[0].x; }});") if on_click_step else ""
        self.add(f'<div class="figure"><div id="{div}"></div><p class="caption">{_e(caption)}</p></div>'
                 f'<script nonce="{self.nonce}">(function () {{ var f = {data}; '
                 f"Plotly.newPlot('{div}', f.data, f.layout, {{displaylogo: false, responsive: true}}); {click} }})();"
                 "</script>")

    def html(self, title: str) -> str:
        import plotly.offline

        csp = (f"default-src 'none'; script-src 'nonce-{self.nonce}'; style-src 'unsafe-inline'; "
               "img-src data:; font-src data:; connect-src 'none'; form-action 'none'; base-uri 'none'")
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
                f'<meta name="referrer" content="no-referrer"><title>{title}</title><style>{STYLE}</style>'
                f'<script nonce="{self.nonce}">{plotly.offline.get_plotlyjs()}</script></head>'
                f"<body><main>{''.join(self.parts)}</main></body></html>\n")


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2328; background: #fff; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.5em; margin: 0 0 4px; word-break: break-all; } h2 { margin-top: 32px; border-bottom: 1px solid #ddd; }
.meta { color: #57606a; } .badge { padding: 1px 8px; border-radius: 10px; color: #fff; font-weight: 600; }
.success { background: #2e9d5b; } .failure { background: #d43d3d; } .unknown { background: #8a8f98; }
.counts { display: flex; gap: 24px; flex-wrap: wrap; margin: 12px 0; }
.counts div b { display: block; font-size: 1.3em; }
.step { border: 1px solid #d0d7de; border-radius: 8px; padding: 8px 14px; margin: 10px 0; }
.step.failed { border-left: 6px solid #d43d3d; } .step.passed { border-left: 6px solid #2e9d5b; }
.step h3 { margin: 4px 0 8px; font-size: 1.05em; } .label { font-weight: 600; margin-top: 6px; cursor: default; }
pre { white-space: pre-wrap; word-break: break-word; background: #f6f8fa; padding: 8px; border-radius: 6px;
      margin: 4px 0; font-size: 0.9em; }
.caption, .note { color: #57606a; font-size: 0.9em; } table { border-collapse: collapse; }
td, th { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
"""


def _replay_checkpoint(store: CorpusStore, trajectory_id: str, checkpoint: Path | str | None) -> str | None:
    """The checkpoint whose cached replay of this run the bundle shows: the given one, else the first that has it."""
    if checkpoint is not None:
        from horizonlens.model.loader import checkpoint_id

        ckpt = checkpoint_id(checkpoint)
        return ckpt if not replays.replay_steps(store, ckpt, trajectory_id).empty else None
    return next((c for c in store.replay_checkpoints if not replays.replay_steps(store, c, trajectory_id).empty), None)


def bundle_html(store: CorpusStore, trajectory_id: str, checkpoint: Path | str | None = None,
                redactor: Redactor | None = None) -> tuple[str, Bundle]:
    """The bundle of one run as HTML text, and what it holds (ExportError for an unknown id).

    A bundle takes a run out of the server: the principal acting needs the `export` permission.
    """
    require(Permission.EXPORT)
    info = store.trajectory(trajectory_id)
    if info is None:
        raise ExportError(f"no trajectory with id {trajectory_id!r} in {store.root}")
    page = _Page(redactor or Redactor())
    steps = store.steps(trajectory_id).to_pylist()
    timeline = error_timeline(store, trajectory_id)
    summary = timeline_summary(timeline)
    _header(page, info, summary, len(steps))
    if not timeline.empty:
        shown = timeline.copy()
        for col in TIMELINE_TEXT:
            shown[col] = [page.redactor.text(v) if isinstance(v, str) else v for v in shown[col]]
        page.add("<h2>Timeline</h2>")
        page.figure(rfig.timeline_strip(shown), "Each bar is a step: green = check passed, red = failed, grey = no "
                                                "check; ◆ = annotated decisive error. Click a bar to go to the step.",
                    on_click_step=True)
    ckpt = _replay_checkpoint(store, trajectory_id, checkpoint)
    failed = timeline.loc[timeline["failed"] == 1, "step"].tolist() if not timeline.empty else []
    _routing(page, store, trajectory_id, ckpt, failed, checkpoint is not None)
    labels = labels_of(store, trajectory_id).to_pylist()
    _labels(page, labels)
    page.add("<h2>Steps</h2>")
    for s in steps:
        _step(page, s)
    text = page.html(f"Horizon Lens · {page.t(trajectory_id, 200)}")
    return text, Bundle(None, len(text.encode("utf-8")), len(steps), len(labels), ckpt,
                        dict(page.redactor.counts))


def bundle_file_name(trajectory_id: str) -> str:
    """A file name for a run's bundle that is safe on every system."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", trajectory_id)[:100] + ".html"


def write_bundle(store: CorpusStore, trajectory_id: str, out: Path | str, checkpoint: Path | str | None = None,
                 redactor: Redactor | None = None) -> Bundle:
    """Write the bundle of one run to the file `out` (whole or not at all)."""
    text, bundle = bundle_html(store, trajectory_id, checkpoint, redactor)
    bundle.path = write_file_atomic(out, text.encode("utf-8"))
    return bundle


def _header(page: _Page, info: dict[str, Any], summary: dict[str, Any], n_steps: int) -> None:
    outcome = str(info.get("outcome") or "unknown")
    css = outcome if outcome in ("success", "failure") else "unknown"
    reward = f"{info['reward']:.2f}" if info.get("reward") is not None else "—"
    page.add(f"<h1>{page.t(info['trajectory_id'], 500)}</h1>"
             f'<p class="meta"><span class="badge {css}">{page.t(outcome, 40)}</span>'
             f" · domain {page.t(info.get('domain') or '—', 200)}"
             f" · agent {page.t(info.get('agent') or '—', 200)} · teacher {page.t(info.get('teacher') or '—', 200)}"
             f" · task {page.t(info.get('task_id') or '—', 200)} · source {page.t(info.get('source') or '—', 200)}</p>")
    counts = {"Steps": f"{n_steps:,}", "Tokens": f"{info.get('n_tokens') or 0:,}", "Checks": summary["checks"],
              "Failed checks": summary["failed"], "Recovered": summary["recovered"], "Reward": reward,
              "Decisive step": summary["decisive_step"] if summary["decisive_step"] is not None else "—"}
    page.add('<div class="counts">' + "".join(f"<div>{_e(k)}<b>{_e(v)}</b></div>" for k, v in counts.items())
             + "</div>")
    page.field("Task", info.get("task"))
    page.add('<p class="note">Written by Horizon Lens as a self-contained page: it loads nothing from the network. '
             "Secrets matching the redaction patterns were replaced before writing.</p>")


def _routing(page: _Page, store: CorpusStore, tid: str, ckpt: str | None, failed: list[int], asked: bool) -> None:
    if ckpt is None:
        if asked:
            page.add('<h2>Routing</h2><p class="note">This run has not been replayed through the given checkpoint; '
                     "replay it (`horizonlens replay CORPUS --checkpoint DIR --trajectory ID`) to include the "
                     "routing views.</p>")
        return
    page.add(f"<h2>Routing · {page.t(ckpt, 200)}</h2>")
    signals = model_side.signals_by_step(store, ckpt, tid)
    drift = routing.routing_drift(store, ckpt, tid)
    page.figure(rfig.step_signals(signals, failed, drift), "Surprisal of the agent's action, router entropy, and drift "
                "of expert load from the run's first steps (Jensen–Shannon distance, mean over layers), per step.")
    layers = replays.moe_layers(store, ckpt)
    if layers:
        n_experts = routing.num_experts(store, ckpt)
        load = routing.step_expert_load(store, ckpt, tid, layers[-1])
        page.figure(rfig.step_expert_heatmap(load, n_experts, failed, layers[-1]),
                    "Each column is a step, each row an expert of the last MoE layer (busiest on top); shade = its "
                    "share of the step's token→expert assignments. Dotted lines = failed checks.")


def _labels(page: _Page, labels: list[dict[str, Any]]) -> None:
    if not labels:
        return
    rows = "".join(f"<tr><td>{'run' if r.get('step') is None else _e(r['step'])}</td>"
                   f"<td>{page.t(r.get('label') or '', 500)}</td><td>{page.t(r.get('category') or '', 200)}</td>"
                   f"<td>{page.t(r.get('note') or '', 5000)}</td>"
                   f"<td>{page.t(r.get('author') or '', 200)}</td><td>{page.t(r.get('source') or '', 200)}</td></tr>"
                   for r in labels)
    page.add("<h2>Labels</h2><table><tr><th>step</th><th>label</th><th>category</th><th>note</th><th>author</th>"
             f"<th>source</th></tr>{rows}</table>")


def _step(page: _Page, s: dict[str, Any]) -> None:
    n = int(s["step"])
    check = s.get("check_passed")
    css, status = ("passed", "check passed") if check is True else ("failed", "check failed") if check is False \
        else ("", "no check")
    decisive = " · ◆ decisive error" if s.get("is_decisive_error") else ""
    page.add(f'<section class="step {css}" id="step-{n}"><h3>Step {n} · {page.t(s.get("source") or "", 40)} · '
             f"{status}{decisive}</h3>")
    if s.get("check_detail") or s.get("error_label"):
        page.add(f'<p class="note">{page.t(s.get("error_label") or "", 500)} '
                 f'{page.t(s.get("check_detail") or "", 2000)}'
                 f" (label: {page.t(s.get('label_source') or 'n/a', 100)})</p>")
    page.field("Knowledge", s.get("knowledge"))
    page.field("Reasoning", s.get("reasoning"))
    page.field("Message", s.get("message"))
    for call in s.get("tool_calls") or []:
        args = call.get("arguments") or ""
        try:
            args = json.dumps(json.loads(args), indent=2, ensure_ascii=False)
        except (ValueError, TypeError):
            pass
        page.field(f"Tool call · {page.redactor.text(call.get('name') or '')}", args or "(no arguments)")
    for obs in s.get("observations") or []:
        page.field("Observation", obs.get("content") or "(empty)")
    page.add(f'<p class="note">{s.get("n_tokens") or 0:,} tokens · {s.get("duration_s") or 0:.2f} s</p></section>')

