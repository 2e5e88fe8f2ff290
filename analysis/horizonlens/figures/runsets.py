"""Run-set comparison figures and tables: survival of A and B, B − A along the horizon, pass^k, the task grid.

The same reading guides serve the page, the CLI table and the HTML report (`report.py`), so the three say
the same thing about each statistic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from horizonlens.figures.compounding import _rgba
from horizonlens.figures.style import empty, layout, plain

SIDE_COLORS = {"a": "#7b7f87", "b": "#3b6fd8"}

# One line per statistic: what it says and how to read it.
GUIDES = {
    "common_tasks": "Tasks both run sets attempted (same task_id): every statistic below is paired over them.",
    "pass_rate": "Mean over tasks of the share of trials that succeeded; B − A with a 95% interval from resampling "
                 "tasks. An interval that excludes 0 is a difference the tasks support.",
    "mcnemar": "First trials only: tasks that only A solved vs only B solved. The exact p-value asks whether that "
               "split is further from 50:50 than chance makes it.",
    "pass_k": "Chance that k trials of a task all succeed. A gap that widens with k: one side is less reliable, "
              "not only less able.",
    "logrank": "Steps until the first failed check, all trials of both sides: a small p-value means the curves "
               "differ (one side makes its first mistake sooner).",
    "flipped": "Tasks one side solves in most trials and the other in few: open one to see where its best pair "
               "of runs parts.",
    "horizon": "B − A per band of task length (median steps of the task's runs): does B's advantage come on the "
               "long tasks?",
}


def _fmt(x: Any, spec: str = ".3g") -> str:
    """A number in `spec` (".1%", "+.1%", ...), or a dash when there is none."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "—"
    return format(x, spec)


def _ci(ci: list[float] | None) -> str:
    return "—" if not ci else f"[{ci[0]:+.1%}, {ci[1]:+.1%}]"


def _p(p: float | None) -> str:
    return "—" if p is None else ("< 0.0001" if p < 1e-4 else f"{p:.4f}")


def _p_is(p: float | None) -> str:
    """A p-value as a statement: "p = 0.0730", "p < 0.0001" (never "p = < 0.0001")."""
    text = _p(p)
    return text if p is None else f"p {text}" if text.startswith("<") else f"p = {text}"


def stat_rows(summary: dict[str, Any]) -> pd.DataFrame:
    """The headline statistics as rows: statistic, A, B, B − A, interval or p-value, and how to read it."""
    rate, mc, lr = summary["pass_rate"], summary["mcnemar"], summary["logrank"]
    rows = [
        {"statistic": "common tasks", "A": f"{summary['a']['n_tasks']:,} tasks, {summary['a']['n_runs']:,} runs",
         "B": f"{summary['b']['n_tasks']:,} tasks, {summary['b']['n_runs']:,} runs",
         "B − A": f"{summary['common_tasks']:,} shared", "95% CI / p": "", "reading": GUIDES["common_tasks"]},
        {"statistic": "pass rate", "A": _fmt(rate["a"], ".1%"), "B": _fmt(rate["b"], ".1%"),
         "B − A": _fmt(rate["diff"], "+.1%"), "95% CI / p": _ci(rate["ci"]), "reading": GUIDES["pass_rate"]},
        {"statistic": "McNemar (first trials)", "A": f"{mc['a_only']} only A", "B": f"{mc['b_only']} only B",
         "B − A": f"{mc['b_only'] - mc['a_only']:+d} tasks", "95% CI / p": _p_is(mc['p_value']),
         "reading": mc["note"] or GUIDES["mcnemar"]},
    ]
    for r in summary["pass_k"]:
        rows.append({"statistic": f"pass^{r['k']} ({r['tasks']} tasks)", "A": _fmt(r["a"], ".1%"),
                     "B": _fmt(r["b"], ".1%"), "B − A": _fmt(r["diff"], "+.1%"), "95% CI / p": _ci(r["ci"]),
                     "reading": GUIDES["pass_k"] if r["k"] == 1 else
                     f"Chance that all {r['k']} sampled trials of a task succeed, per side."})
    rows.append({"statistic": "log-rank (steps to first failed check)",
                 "A": f"{lr['a_events']}/{lr['a_runs']} runs fail a check",
                 "B": f"{lr['b_events']}/{lr['b_runs']} runs fail a check",
                 "B − A": f"χ² = {_fmt(lr['statistic'])}", "95% CI / p": _p_is(lr['p_value']),
                 "reading": lr["note"] or GUIDES["logrank"]})
    return pd.DataFrame(rows)


def facet_rows(groups: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per facet value: tasks, pass rates, B − A with its interval, Holm-adjusted p-values, notes."""
    rows = [{"value": g["value"], "common tasks": g["common_tasks"], "A": g["pass_rate"]["a"],
             "B": g["pass_rate"]["b"], "B − A": g["pass_rate"]["diff"], "95% CI": _ci(g["pass_rate"]["ci"]),
             "only A / only B": f"{g['mcnemar']['a_only']} / {g['mcnemar']['b_only']}",
             "McNemar p (Holm)": _p(g["mcnemar"].get("p_holm")), "log-rank p (Holm)": _p(g["logrank"].get("p_holm")),
             "note": g["note"] or ""} for g in groups]
    return pd.DataFrame(rows)


def task_grid(tasks: pd.DataFrame) -> pd.DataFrame:
    """The task × run-set grid: successes/trials of A and B per common task, B − A, flipped and its direction."""
    if tasks.empty:
        return pd.DataFrame(columns=["task_id", "A", "B", "A rate", "B rate", "B − A", "flipped", "steps"])
    a_rate = tasks["a_successes"] / tasks["a_trials"]
    b_rate = tasks["b_successes"] / tasks["b_trials"]
    return pd.DataFrame({
        "task_id": tasks["task_id"],
        "A": [f"{c}/{n}" for c, n in zip(tasks["a_successes"], tasks["a_trials"], strict=True)],
        "B": [f"{c}/{n}" for c, n in zip(tasks["b_successes"], tasks["b_trials"], strict=True)],
        "A rate": a_rate, "B rate": b_rate, "B − A": b_rate - a_rate,
        "flipped": np.where(tasks["winner"] == "b", "→ B", np.where(tasks["winner"] == "a", "→ A", "")),
        "steps": tasks["horizon"]})


def survival(km: pd.DataFrame, names: dict[str, str], max_t: int | None = None) -> go.Figure:
    """Kaplan–Meier survival to the first failed check of A and B on their common tasks, with 95% bands."""
    if km.empty:
        return empty("No runs on common tasks")
    fig = go.Figure()
    for side, part in km.groupby("side", sort=True):
        part = part[part["t"] <= max_t] if max_t else part
        c = SIDE_COLORS.get(str(side), "#3b6fd8")
        fig.add_scatter(x=np.r_[part["t"], part["t"][::-1]], y=np.r_[part["upper"], part["lower"][::-1]],
                        fill="toself", fillcolor=_rgba(c, 0.15), line=dict(width=0), hoverinfo="skip",
                        showlegend=False)
        fig.add_scatter(x=part["t"], y=part["survival"], mode="lines", line=dict(shape="hv", color=c),
                        name=f"{str(side).upper()}: {plain(names.get(str(side), side))}", customdata=part["at_risk"],
                        hovertemplate="step %{x}<br>S = %{y:.3f}<br>at risk %{customdata}<extra></extra>")
    return layout(fig, "Survival to the first failed check, same tasks", xaxis_title="step",
                  yaxis_title="share of runs without a failed check", yaxis_range=[0, 1.02])


def by_horizon(bins: list[dict[str, Any]]) -> go.Figure:
    """B − A pass rate per horizon band with its 95% interval, and how many tasks flipped each way."""
    if not bins:
        return empty("No common tasks")
    df = pd.DataFrame(bins)
    lo = [d - c[0] if c else 0 for d, c in zip(df["diff"], df["ci"], strict=True)]
    hi = [c[1] - d if c else 0 for d, c in zip(df["diff"], df["ci"], strict=True)]
    labels = [plain(b.split(". ", 1)[-1]) for b in df["bin"]]
    fig = go.Figure()
    fig.add_bar(x=labels, y=df["b_wins"], name="tasks flipped to B", marker_color=_rgba(SIDE_COLORS["b"], 0.35),
                yaxis="y2")
    fig.add_bar(x=labels, y=df["a_wins"], name="tasks flipped to A", marker_color=_rgba(SIDE_COLORS["a"], 0.35),
                yaxis="y2")
    fig.add_scatter(x=labels, y=df["diff"], mode="lines+markers", name="B − A pass rate",
                    line=dict(color=SIDE_COLORS["b"]), error_y=dict(type="data", array=hi, arrayminus=lo),
                    customdata=np.c_[df["a"], df["b"], df["tasks"]],
                    hovertemplate="%{x}<br>B − A = %{y:+.1%}<br>A %{customdata[0]:.1%}, B %{customdata[1]:.1%}"
                                  "<br>%{customdata[2]} tasks<extra></extra>")
    fig.add_hline(y=0, line=dict(color="#8a8f98", width=1, dash="dot"))
    return layout(fig, "B − A along the horizon", xaxis_title="task length (median steps of its runs)",
                  yaxis=dict(title="B − A pass rate", tickformat="+.0%", zeroline=False),
                  yaxis2=dict(title="flipped tasks", overlaying="y", side="right", showgrid=False, rangemode="tozero",
                              tickmode="auto", tickformat="d", dtick=max(1, int(max(df["b_wins"].max(),
                                                                                     df["a_wins"].max())) // 4)),
                  barmode="group", margin=dict(l=60, r=60, t=50, b=50))


def pass_k(rows: list[dict[str, Any]], names: dict[str, str]) -> go.Figure:
    """pass^k of A and B on the same tasks, k = 1..K."""
    if not rows:
        return empty("No common tasks")
    df = pd.DataFrame(rows)
    fig = go.Figure()
    for side in ("a", "b"):
        fig.add_scatter(x=df["k"], y=df[side], mode="lines+markers", line=dict(color=SIDE_COLORS[side]),
                        name=f"{side.upper()}: {plain(names.get(side, side))}")
    return layout(fig, "pass^k on the same tasks", xaxis_title="k", yaxis_title="pass^k", yaxis_range=[0, 1.02],
                  xaxis=dict(dtick=1))
