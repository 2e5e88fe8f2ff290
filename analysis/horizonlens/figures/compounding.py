"""Compounding-page figures: survival vs baseline, hazard, self-conditioning, recovery, horizons, pass^k."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from horizonlens.figures.style import SEQUENCE, empty, layout, plain


def _color(i: int) -> str:
    return SEQUENCE[i % len(SEQUENCE)]


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)}, {int(h[2:4], 16)}, {int(h[4:6], 16)}, {alpha})"


def survival(km: pd.DataFrame, max_t: int | None = None) -> go.Figure:
    """Kaplan–Meier S(t) with its band, and the dashed independent-errors baseline (1 − p̂)^t."""
    if km.empty:
        return empty("No checked steps")
    fig = go.Figure()
    for i, (grp, part) in enumerate(km.groupby("group", sort=True)):
        part = part[part["t"] <= max_t] if max_t else part
        c = _color(i)
        fig.add_scatter(x=np.r_[part["t"], part["t"][::-1]], y=np.r_[part["upper"], part["lower"][::-1]],
                        fill="toself", fillcolor=_rgba(c, 0.15), line=dict(width=0), hoverinfo="skip",
                        showlegend=False)
        fig.add_scatter(x=part["t"], y=part["survival"], mode="lines", line=dict(shape="hv", color=c), name=plain(grp))
        fig.add_scatter(x=part["t"], y=part["baseline"], mode="lines", line=dict(dash="dash", color=c, width=1),
                        name=f"{plain(grp)}: (1−p̂)^t")
        if "baseline_clean" in part:
            fig.add_scatter(x=part["t"], y=part["baseline_clean"], mode="lines",
                            line=dict(dash="dot", color=c, width=1), name=f"{plain(grp)}: (1−p₀)^t")
    return layout(fig, "Survival to the first failed check vs independent errors", xaxis_title="checked step t",
                  yaxis_title="share of runs without a failed check", yaxis_range=[0, 1.02])


def hazard(km: pd.DataFrame, max_t: int | None = 60, min_at_risk: int = 20) -> go.Figure:
    """Per-step hazard of the first failure, where enough runs are still at risk."""
    km = km[km["at_risk"] >= min_at_risk]
    if max_t:
        km = km[km["t"] <= max_t]
    if km.empty:
        return empty(f"Fewer than {min_at_risk} runs at risk at every step")
    fig = go.Figure()
    for i, (grp, part) in enumerate(km.groupby("group", sort=True)):
        fig.add_scatter(x=part["t"], y=part["hazard"], mode="lines+markers", name=plain(grp),
                        line=dict(color=_color(i)), customdata=part["at_risk"],
                        hovertemplate="t=%{x}<br>hazard=%{y:.3f}<br>at risk=%{customdata}")
    return layout(fig, "Hazard of the first failed check", xaxis_title="checked step t", yaxis_title="h(t)")


def rate_bars(df: pd.DataFrame, x: str, title: str, x_title: str) -> go.Figure:
    """Bars of a rate with Wilson error bars, one colour per group."""
    if df.empty:
        return empty("No data")
    fig = go.Figure()
    for i, (grp, part) in enumerate(df.groupby("group", sort=True)):
        fig.add_bar(x=[plain(v) for v in part[x]], y=part["rate"], name=plain(grp), marker_color=_color(i),
                    error_y=dict(type="data", symmetric=False, array=part["upper"] - part["rate"],
                                 arrayminus=part["rate"] - part["lower"]),
                    customdata=np.c_[part["checks"], part["failures"]],
                    hovertemplate="%{x}: %{y:.3f}<br>%{customdata[1]} of %{customdata[0]} checks")
    return layout(fig, title, barmode="group", xaxis_title=x_title, yaxis_title="P(check fails)")


def self_conditioning(df: pd.DataFrame) -> go.Figure:
    """P(check fails | j earlier failed checks) as bars per group, the last bin open-ended (≥ j)."""
    fig = rate_bars(df.assign(j=df["j"].map(lambda j: f"{j}" if j < df["j"].max() else f"≥{j}")), "j",
                    "Self-conditioning: P(fail | j earlier failures)", "earlier failed checks j")
    return fig


def previous_step(df: pd.DataFrame) -> go.Figure:
    """P(check fails) after a failed vs a passed previous check, per group."""
    return rate_bars(df, "previous", "P(fail | previous check)", "")


def recovery(df: pd.DataFrame) -> go.Figure:
    """What follows a failed check, per group: next check passes, retry, retry passes, run succeeds."""
    if df.empty:
        return empty("No failed checks")
    fig = go.Figure()
    metrics = [("next_check_pass_rate", "next check passes"), ("retry_rate", "same tool retried"),
               ("recovery_rate", "retry passes"), ("success_after_failure", "run still succeeds")]
    for i, (grp, part) in enumerate(df.groupby("group", sort=True)):
        fig.add_bar(x=[m[1] for m in metrics], y=[float(part[m[0]].iloc[0]) for m in metrics], name=plain(grp),
                    marker_color=_color(i))
    return layout(fig, "After a failed check", barmode="group", yaxis_tickformat=".0%", yaxis_range=[0, 1])


def success_vs_length(points: pd.DataFrame, fits: pd.DataFrame) -> go.Figure:
    """Binned success rate by step count (dots), the logistic fit (line), and the 50%/80% horizons.

    `points` has one row per (group, n_steps, success) cell with its count in `runs`.
    """
    if points.empty:
        return empty("No trajectories with a success/failure outcome")
    fig = go.Figure()
    for i, (grp, part) in enumerate(points.groupby("group", sort=True)):
        c = _color(i)
        x = np.log2(part["n_steps"].to_numpy(dtype=float))
        runs = part["runs"].to_numpy(dtype=float) if "runs" in part else np.ones(len(part))
        edges = np.linspace(x.min(), x.max() + 1e-9, 12)
        cells = pd.DataFrame({"b": np.digitize(x, edges) - 1, "xw": x * runs,
                              "yw": part["success"].to_numpy(dtype=float) * runs, "n": runs})
        sums = cells.groupby("b").sum()
        binned = pd.DataFrame({"x": sums["xw"] / sums["n"], "y": sums["yw"] / sums["n"], "n": sums["n"].astype(int)})
        fig.add_scatter(x=2 ** binned["x"], y=binned["y"], mode="markers", marker=dict(color=c, size=8),
                        name=f"{plain(grp)} (binned)", customdata=binned["n"],
                        hovertemplate="%{x:.0f} steps: %{y:.0%} (n=%{customdata})")
        fit = fits[fits["group"] == grp]
        if not fit.empty and bool(fit["fitted"].iloc[0]):
            grid = np.linspace(x.min(), x.max(), 100)
            a, b = float(fit["intercept"].iloc[0]), float(fit["slope"].iloc[0])
            fig.add_scatter(x=2 ** grid, y=1 / (1 + np.exp(-(a + b * grid))), mode="lines", line=dict(color=c),
                            name=f"{plain(grp)} fit")
            for q, dash in ((50, "dot"), (80, "dash")):
                v = fit[f"steps_at_{q}"].iloc[0]
                if v is not None and np.isfinite(v) and v > 0:
                    # the line in data units; its label apart, because annotations on a log axis take log10(x)
                    # (add_vline's own label at x=41 stretched the axis to 10^41)
                    fig.add_vline(x=v, line=dict(color=c, dash=dash, width=1))
                    fig.add_annotation(x=np.log10(v), y=1, yref="paper", yanchor="bottom", showarrow=False,
                                       text=f"{q}%: {v:.0f}", font=dict(size=10, color=c))
    return layout(fig, "Success vs horizon length", xaxis_type="log", xaxis_title="steps (log scale)",
                  yaxis_title="success rate", yaxis_range=[0, 1.05], yaxis_tickformat=".0%")


def pass_k(df: pd.DataFrame) -> go.Figure:
    """pass^k against k per group: how reliability falls when all k trials must succeed."""
    if df.empty:
        return empty("No tasks with several trials")
    fig = go.Figure()
    for i, (grp, part) in enumerate(df.groupby("group", sort=True)):
        fig.add_scatter(x=part["k"], y=part["pass_hat_k"], mode="lines+markers", name=plain(grp),
                        line=dict(color=_color(i)))
    return layout(fig, "pass^k: all k trials succeed", xaxis_title="k", yaxis_title="pass^k", yaxis_range=[0, 1.02],
                  xaxis_dtick=1)
