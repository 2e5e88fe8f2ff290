"""The self-contained HTML report of a run-set comparison (`horizonlens diff --html FILE`).

One file that opens anywhere without a network: Plotly's JavaScript is inlined once, every figure follows it,
and every text from the corpus (run-set names, predicates, task ids, facet values) is HTML-escaped, so a
hostile name shows as typed.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
import plotly.io as pio

from horizonlens.figures import runsets as rfig

GRID_ROWS = 2_000  # the task grid in the report: the flipped tasks first, then the rest, up to this many rows

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px 32px; color: #1f2328; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border-bottom: 1px solid #e1e4e8; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.guide { color: #57606a; font-size: 13px; margin: 4px 0 10px; max-width: 980px; }
.note { background: #fff8c5; padding: 6px 10px; border-radius: 4px; display: inline-block; }
"""


def _table(df: pd.DataFrame, numeric: tuple[str, ...] = ()) -> str:
    """An HTML table of `df` with every cell escaped (cells come from the corpus)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False, name=None):
        cells = []
        for col, v in zip(df.columns, row, strict=True):
            text = "" if v is None or v is pd.NA or (isinstance(v, float) and pd.isna(v)) else (
                f"{v:.3f}" if isinstance(v, float) else str(v))
            cells.append(f"<td class='num'>{html.escape(text)}</td>" if col in numeric
                         else f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _guide(key: str) -> str:
    return f"<p class='guide'>{html.escape(rfig.GUIDES[key])}</p>"


def report_html(summary: dict[str, Any], tasks: pd.DataFrame, km: pd.DataFrame) -> str:
    """The report of one comparison: settings, statistics with reading guides, figures, flipped tasks, the grid."""
    names = {"a": summary["a"]["name"], "b": summary["b"]["name"]}
    figures = [rfig.survival(km, names, max_t=int(km["t"].quantile(0.99)) if not km.empty else None),
               rfig.by_horizon(summary["by_horizon"]), rfig.pass_k(summary["pass_k"], names)]
    # the first figure carries Plotly's JavaScript inline; the others reuse it
    charts = [pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False, config={"displaylogo": False})
              for i, fig in enumerate(figures)]
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Run sets: {esc(names['a'])} vs "
             f"{esc(names['b'])}</title><style>{_STYLE}</style></head><body>",
             "<h1>Run sets compared on their common tasks</h1>",
             f"<p><b>A</b>: {esc(names['a'])} &nbsp; <b>B</b>: {esc(names['b'])}</p>"]
    for side in ("a", "b"):
        predicate = summary[side].get("predicate")
        if predicate:
            parts.append(f"<p class='guide'>{side.upper()} predicate: <code>{esc(predicate)}</code></p>")
    settings = summary["settings"]
    parts.append(f"<p class='guide'>pass^k up to k = {settings['k']}; {settings['n_boot']:,} bootstrap resamples "
                 f"of tasks (seed {settings['seed']}); tests need at least {settings['min_tasks']} common tasks.</p>")
    if summary.get("note"):
        parts.append(f"<p class='note'>{esc(summary['note'])}</p>")
    parts += ["<h2>Statistics</h2>", _table(rfig.stat_rows(summary)), "<h2>Survival</h2>", _guide("logrank"),
              charts[0], "<h2>Along the horizon</h2>", _guide("horizon"), charts[1], "<h2>pass^k</h2>",
              _guide("pass_k"), charts[2]]
    if summary.get("by"):
        parts += [f"<h2>By {esc(summary['by'][0]['facet'])}</h2>",
                  "<p class='guide'>p-values Holm-adjusted across the values; a value with too few common tasks "
                  "gets a note instead.</p>", _table(rfig.facet_rows(summary["by"]), ("common tasks", "A", "B",
                                                                                        "B − A"))]
    flips = pd.DataFrame(summary["flipped"])
    parts += ["<h2>Flipped tasks</h2>", _guide("flipped")]
    if summary.get("settings", {}).get("pairs") is False:  # `diff --no-pairs`
        parts.append("<p>Made with --no-pairs: each pair is the lowest trials' success and failure, not the pair "
                     "that agrees longest, and the step where it parts was not looked for.</p>")
    if flips.empty:
        parts.append("<p>No task flipped.</p>")
    else:
        shown = flips[["task_id", "winner", "a_successes", "a_trials", "b_successes", "b_trials",
                       "first_divergence_step", "a_trajectory", "b_trajectory"]].copy()
        shown["winner"] = shown["winner"].str.upper()
        shown["first_divergence_step"] = shown["first_divergence_step"].astype("Int64")
        parts.append(_table(shown, ("a_successes", "a_trials", "b_successes", "b_trials", "first_divergence_step")))
    grid = rfig.task_grid(tasks)
    if not grid.empty:
        grid = pd.concat([grid[grid["flipped"] != ""], grid[grid["flipped"] == ""]]).head(GRID_ROWS)
        cut = f"; the first {GRID_ROWS:,}, flipped first" if len(tasks) > GRID_ROWS else ""
        parts += [f"<h2>Tasks ({len(tasks):,} common{cut})</h2>", _table(grid, ("A rate", "B rate", "B − A", "steps"))]
    parts.append("</body></html>")
    return "\n".join(parts)
