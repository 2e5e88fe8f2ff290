"""Rollout vs replay routing figures: where the inference engine's experts differ from the replay's.

Built to stay readable at 40-60 MoE layers: layers are positions on an axis (never colours), the token
strip has three states whatever the expert count, and failed checks are one marker trace rather than
one shape per check.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from horizonlens.figures.style import SEQUENCE, STATUS_COLORS, empty, layout

# The token strip's states, in the order of the discrete colour scale.
STRIP_STATES = ("same experts", "differs (near-tie)", "differs")
STRIP_COLORS = ("#e6e8eb", "#f2b25c", "#c0392b")
NEAR_TIE_COLOR = "#f2b25c"
CLEAR_COLOR = "#c0392b"
TITLED_LEGEND = dict(l=50, r=20, t=90, b=45)  # room for the title above the legend, which sits above the plot


def _layer_labels(layers: pd.Series) -> list[str]:
    return [f"L{int(x)}" for x in layers]


def layer_mismatch_bars(df: pd.DataFrame) -> go.Figure:
    """Per MoE layer: the share of tokens whose top-k set differs, split into near-ties and clear flips.

    The stacked bar is the set-mismatch rate; its light part is mismatches where the replay router had
    a near-tie (k-th vs (k+1)-th margin under the threshold). Diamonds: top-1 mismatch rate.
    """
    if df.empty:
        return empty("No rollout routing compared with this checkpoint's replays yet")
    x = _layer_labels(df["layer"])
    rate = df["set_mismatch"].astype(float)
    share = df["near_tie_share"].astype(float).fillna(0.0) if "near_tie_share" in df else pd.Series(0.0, df.index)
    has_ties = "near_tie_share" in df and df["near_tie_share"].notna().any()
    fig = go.Figure()
    hover = "%{x}: %{y:.2%} of tokens<extra>%{fullData.name}</extra>"
    if has_ties:
        fig.add_bar(x=x, y=rate * share, name="differs, near-tie in the replay", marker_color=NEAR_TIE_COLOR,
                    hovertemplate=hover)
        fig.add_bar(x=x, y=rate * (1 - share), name="differs, clear margin", marker_color=CLEAR_COLOR,
                    hovertemplate=hover)
    else:
        fig.add_bar(x=x, y=rate, name="top-k set differs", marker_color=CLEAR_COLOR, hovertemplate=hover)
    fig.add_scatter(x=x, y=df["top1_mismatch"], mode="markers", name="top-1 expert differs",
                    marker=dict(symbol="diamond", size=8, color=SEQUENCE[0]), hovertemplate=hover)
    n = len(x)
    return layout(fig, "Rollout vs replay: tokens routed differently, per MoE layer", barmode="stack",
                  yaxis_tickformat=".1%", yaxis_title="share of compared tokens", xaxis_title="MoE layer",
                  xaxis=dict(tickangle=-90 if n > 24 else 0, dtick=1 if n <= 24 else 2), height=400,
                  margin=TITLED_LEGEND)


def mismatch_along_horizon(steps: pd.DataFrame, failed_steps: list[int], current: int | None = None) -> go.Figure:
    """Per step: the share of tokens routed differently in any layer, and per (token, layer); failed checks marked."""
    if steps.empty:
        return empty("This trajectory's rollout routing has not been compared yet")
    fig = go.Figure()
    fig.add_scatter(x=steps["step"], y=steps["token_any_layer_mismatch"], mode="lines+markers",
                    name="tokens differing in ≥ 1 layer", line=dict(color=CLEAR_COLOR), marker=dict(size=4),
                    customdata=steps["tokens"],
                    hovertemplate="step %{x}: %{y:.1%} of %{customdata:,} tokens<extra></extra>")
    fig.add_scatter(x=steps["step"], y=steps["set_mismatch"], mode="lines", name="(token, layer) cells differing",
                    line=dict(color=SEQUENCE[0], dash="dot"), yaxis="y2",
                    hovertemplate="step %{x}: %{y:.2%} of cells<extra></extra>")
    top = float(np.nanmax(steps["token_any_layer_mismatch"].to_numpy(dtype=float))) if len(steps) else 1.0
    top = top if np.isfinite(top) and top > 0 else 1.0
    shown = [s for s in failed_steps if steps["step"].min() <= s <= steps["step"].max()]
    if shown:
        # one trace for every failed check (hundreds of vlines would each be a layout shape)
        fig.add_scatter(x=shown, y=[top * 1.08] * len(shown), mode="markers", name="failed check",
                        marker=dict(symbol="line-ns-open", size=14, color=STATUS_COLORS["failed"], line=dict(width=2)),
                        hovertemplate="failed check at step %{x}<extra></extra>")
    if current is not None:
        fig.add_vline(x=current, line=dict(color="#3b6fd8", width=2))
    few = steps["step"].nunique() <= 30  # integer ticks, never "0.5" between two steps
    return layout(fig, "Rollout vs replay along the horizon (red ticks: failed checks)", xaxis_title="step",
                  xaxis=dict(dtick=1 if few else None, tickformat="d"), height=400, margin=TITLED_LEGEND,
                  yaxis=dict(title="tokens differing", tickformat=".0%", rangemode="tozero", range=[0, top * 1.15]),
                  yaxis2=dict(overlaying="y", side="right", title="cells differing", tickformat=".1%",
                              showgrid=False, rangemode="tozero"))


def token_strip(strip: pd.DataFrame, tokens: pd.DataFrame) -> go.Figure:
    """Tokens of one step (columns, text on the axis) × MoE layers (rows): same experts, near-tie flip, clear flip.

    `strip` has one row per (token_index, layer) with `state` (an index into STRIP_STATES), both top-k lists
    (`replay`, `rollout`) and the replay's `margin` (metrics.rollout.step_token_comparison); `tokens` has
    token_index and text. Cells not compared (no rollout routing there) stay blank.
    """
    if strip.empty or tokens.empty:
        return empty("No compared tokens in this step")
    layers = sorted(strip["layer"].unique())
    idx = tokens["token_index"].to_list()
    col = {t: i for i, t in enumerate(idx)}
    row = {layer: i for i, layer in enumerate(layers)}
    z = np.full((len(layers), len(idx)), np.nan)
    text = np.full((len(layers), len(idx)), "", dtype=object)
    keep = strip[strip["token_index"].isin(col)]
    ri = keep["layer"].map(row).to_numpy(dtype=int)
    ci = keep["token_index"].map(col).to_numpy(dtype=int)
    z[ri, ci] = keep["state"].to_numpy(dtype=float)
    words = dict(zip(idx, tokens["text"], strict=True))
    text[ri, ci] = [f"{words[t]!r} · layer {layer}<br>{STRIP_STATES[int(state)]}<br>replay: {_ids(a)}"
                    f"<br>rollout: {_ids(b)}<br>replay margin: {'—' if m != m else f'{m:.3g}'}"
                    for t, layer, state, a, b, m in zip(keep["token_index"], keep["layer"], keep["state"],
                                                        keep["replay"], keep["rollout"], keep["margin"], strict=True)]
    n = len(STRIP_STATES)
    scale = []
    for i, c in enumerate(STRIP_COLORS):
        scale += [[i / n, c], [(i + 1) / n, c]]
    labels = [f"{i}:{t[:12]}" for i, t in zip(idx, tokens["text"], strict=True)]
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=[f"L{layer}" for layer in layers], colorscale=scale, zmin=-0.5,
                               zmax=n - 0.5, text=text, hoverinfo="text", xgap=1, ygap=1,
                               colorbar=dict(title="", tickvals=list(range(n)), ticktext=list(STRIP_STATES),
                                             len=min(1.0, 0.3 + 0.02 * len(layers)))))
    height = 170 + max(14, min(28, 600 // max(1, len(layers)))) * len(layers)
    return layout(fig, "Rollout vs replay per token and layer (hover: both top-k sets and the replay's margin)",
                  height=height, xaxis_tickangle=-60, xaxis_tickfont=dict(size=10),
                  yaxis=dict(autorange="reversed", dtick=1 if len(layers) <= 24 else 2))


def _ids(experts: Any) -> str:
    """A top-k list for hover text, top-1 first."""
    return "[" + ", ".join(f"E{int(e)}" for e in experts) + "]" if experts is not None else "—"


def segment_mismatch_bars(df: pd.DataFrame) -> go.Figure:
    """Share of tokens routed differently in any layer, per segment type."""
    if df.empty:
        return empty("No compared tokens")
    fig = go.Figure(go.Bar(x=df["segment"], y=df["token_any_layer_mismatch"], marker_color=CLEAR_COLOR,
                           customdata=df["tokens"], name="tokens differing in ≥ 1 layer",
                           hovertemplate="%{x}: %{y:.1%} of %{customdata:,} tokens<extra></extra>"))
    return layout(fig, "By segment: tokens routed differently in ≥ 1 layer", yaxis_tickformat=".0%", height=300)
