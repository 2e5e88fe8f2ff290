"""Trajectory and routing figures: what happened along one trajectory, and how the router spread it.

The error timeline strip, per-step and per-token expert heatmaps, signals along the horizon, expert
load vs uniform, co-activation and usage per layer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from horizonlens.figures.style import SEQUENCE, STATUS_COLORS, empty, layout, plain


def timeline_strip(timeline: pd.DataFrame, current: int | None = None) -> go.Figure:
    """One bar per step coloured by its check; ◆ marks the annotated decisive step. Click a bar to jump."""
    if timeline.empty:
        return empty("No steps", height=120)
    colors = [STATUS_COLORS[s] for s in timeline["status"]]
    hover = [f"step {s} · {plain(src)}{' · ' + plain(tool) if tool else ''}<br>{st}{' · ' + plain(lab) if lab else ''}"
             for s, src, tool, st, lab in zip(timeline["step"], timeline["source"], timeline["tool"],
                                             timeline["status"], timeline["error_label"], strict=True)]
    fig = go.Figure(go.Bar(x=timeline["step"], y=np.ones(len(timeline)), marker_color=colors, marker_line_width=0,
                           hovertext=hover, hoverinfo="text", name="steps", showlegend=False))
    decisive = timeline[timeline["decisive"]]
    if not decisive.empty:
        fig.add_scatter(x=decisive["step"], y=[1.25] * len(decisive), mode="markers", name="decisive step",
                        marker=dict(symbol="diamond", size=12, color="#111"), hovertext="annotated decisive error",
                        hoverinfo="text")
    if current is not None:
        fig.add_vline(x=current, line=dict(color="#3b6fd8", width=2))
    fig.update_yaxes(visible=False, range=[0, 1.45])
    return layout(fig, height=150, bargap=0.05, xaxis_title="step", margin=dict(l=10, r=10, t=10, b=40),
                  clickmode="event+select")


def step_signals(signals: pd.DataFrame, failed_steps: list[int], drift: pd.DataFrame | None = None,
                 current: int | None = None) -> go.Figure:
    """Surprisal, router entropy (and drift) per step along the horizon; red ticks mark failed checks."""
    if signals.empty:
        return empty("No replayed steps")
    fig = go.Figure()
    fig.add_scatter(x=signals["step"], y=signals["surprisal"], mode="lines+markers", name="surprisal (nats)",
                    line=dict(color=SEQUENCE[0]))
    if "entropy" in signals and signals["entropy"].notna().any():
        fig.add_scatter(x=signals["step"], y=signals["entropy"], mode="lines", name="router entropy (nats)",
                        line=dict(color=SEQUENCE[1]), yaxis="y2")
    if drift is not None and not drift.empty:
        fig.add_scatter(x=drift["step"], y=drift["drift"], mode="lines", name="routing drift (JS)",
                        line=dict(color=SEQUENCE[3], dash="dot"), yaxis="y2")
    for s in failed_steps:
        fig.add_vline(x=s, line=dict(color=STATUS_COLORS["failed"], width=1, dash="dot"))
    if current is not None:
        fig.add_vline(x=current, line=dict(color="#3b6fd8", width=2))
    return layout(fig, "Model signals along the horizon (dotted red: failed checks)", xaxis_title="step",
                  yaxis_title="surprisal", yaxis2=dict(overlaying="y", side="right", title="entropy / drift",
                                                       showgrid=False))


def layer_expert_heatmap(routing: pd.DataFrame, num_experts: int, title: str) -> go.Figure:
    """Share of a set of tokens' assignments per (layer, expert)."""
    if routing.empty:
        return empty("No routing for these tokens")
    layers = sorted(routing["layer"].unique())
    z = np.zeros((len(layers), num_experts))
    for i, layer in enumerate(layers):
        experts = np.concatenate(routing.loc[routing["layer"] == layer, "experts"].to_list())
        counts = np.bincount(experts.astype(int), minlength=num_experts)[:num_experts]
        z[i] = counts / max(1, counts.sum())
    fig = go.Figure(go.Heatmap(z=z, x=list(range(num_experts)), y=[f"L{layer}" for layer in layers],
                               colorscale="Blues", zmin=0, colorbar=dict(title="share"),
                               hovertemplate="layer %{y} · expert %{x}: %{z:.1%}<extra></extra>"))
    return layout(fig, title, height=120 + 30 * len(layers), xaxis_title="expert", xaxis_dtick=1)


def _discrete_scale(n: int) -> list[list[object]]:
    palette = ["#3b6fd8", "#e08a1e", "#2e9d5b", "#a04cc2", "#d43d3d", "#1aa3a3", "#7b7f87", "#c7a21a",
               "#5b8def", "#f2b25c", "#6cc28e", "#c486dc", "#ee7c7c", "#5ccaca", "#b0b3b8", "#e6cc5a"]
    scale: list[list[object]] = []
    for i in range(n):
        c = palette[i % len(palette)]
        scale += [[i / n, c], [(i + 1) / n, c]]
    return scale


def token_expert_view(tokens: pd.DataFrame, routing: pd.DataFrame, num_experts: int) -> go.Figure:
    """Tokens of one step (columns, text readable) × layers (rows), coloured by the top-1 expert.

    Hover shows the router's top-k experts and the weights they received.
    """
    if tokens.empty or routing.empty:
        return empty("No routed tokens in this step")
    layers = sorted(routing["layer"].unique())
    idx = tokens["token_index"].to_list()
    pos = {t: i for i, t in enumerate(idx)}
    z = np.full((len(layers), len(idx)), np.nan)
    text = [["" for _ in idx] for _ in layers]
    for token_index, layer, experts, weights, ent in zip(routing["token_index"], routing["layer"],
                                                         routing["experts"], routing["weights"], routing["entropy"],
                                                         strict=True):
        if token_index not in pos:
            continue
        li, ti = layers.index(layer), pos[token_index]
        z[li, ti] = experts[0]
        pairs = ", ".join(f"E{e}: {w:.2f}" for e, w in zip(experts, weights, strict=True))  # the router's top-k
        text[li][ti] = f"{plain(repr(tokens['text'].iloc[ti]))}<br>layer {layer}<br>{pairs}<br>entropy {ent:.2f}"
    labels = [f"{i}:{plain(t, limit=12)}" for i, t in enumerate(tokens["text"])]
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=[f"L{layer}" for layer in layers],
                               colorscale=_discrete_scale(num_experts),
                               zmin=-0.5, zmax=num_experts - 0.5, text=text, hoverinfo="text",
                               colorbar=dict(title="top-1 expert", tickvals=list(range(num_experts)))))
    return layout(fig, "Top-1 expert per token and layer (hover: top-k experts and weights)",
                  height=160 + 28 * len(layers), xaxis_tickangle=-60, xaxis_tickfont=dict(size=10))


def step_expert_heatmap(load: pd.DataFrame, num_experts: int, failed_steps: list[int], layer: int) -> go.Figure:
    """Step × expert load along the horizon for one layer."""
    part = load[load["layer"] == layer]
    if part.empty:
        return empty("No routing for this layer")
    steps = sorted(part["step"].unique())
    pivot = part.pivot_table(index="expert", columns="step", values="share", fill_value=0).reindex(
        index=range(num_experts), columns=steps, fill_value=0)
    fig = go.Figure(go.Heatmap(z=pivot.to_numpy(), x=steps, y=list(range(num_experts)), colorscale="Viridis",
                               colorbar=dict(title="share"),
                               hovertemplate="step %{x} · expert %{y}: %{z:.1%}<extra></extra>"))
    for s in failed_steps:
        fig.add_vline(x=s, line=dict(color=STATUS_COLORS["failed"], width=1, dash="dot"))
    return layout(fig, f"Expert load per step, layer {layer} (dotted: failed checks)", height=380,
                  xaxis_title="step", yaxis_title="expert", yaxis_dtick=1)


def specialization(load: pd.DataFrame, layer: int, by: str) -> go.Figure:
    """Expert load per segment/domain divided by the uniform 1/E (1 = no preference)."""
    part = load[load["layer"] == layer]
    if part.empty:
        return empty("No replayed routing yet")
    pivot = part.pivot_table(index="group", columns="expert", values="specialization", fill_value=0)
    fig = go.Figure(go.Heatmap(z=pivot.to_numpy(), x=pivot.columns.tolist(), y=[plain(g) for g in pivot.index],
                               colorscale="RdBu_r", zmid=1, colorbar=dict(title="× uniform"),
                               hovertemplate=f"{by} %{{y}} · expert %{{x}}: %{{z:.2f}}× uniform<extra></extra>"))
    return layout(fig, f"Expert load by {by} vs uniform, layer {layer}", height=140 + 26 * len(pivot),
                  xaxis_title="expert", xaxis_dtick=1)


def coactivation_matrix(co: pd.DataFrame, num_experts: int, layer: int) -> go.Figure:
    """Expert × expert heatmap of N(i, j) / N(i): how often j is also chosen when i is."""
    if co.empty:
        return empty("No co-activations (top-1 routing or no replays)")
    z = np.full((num_experts, num_experts), np.nan)
    z[co["i"].to_numpy(dtype=int), co["j"].to_numpy(dtype=int)] = co["rate"].to_numpy(dtype=float)
    hover = "with expert %{y}, expert %{x} is also chosen %{z:.1%} of the time<extra></extra>"
    fig = go.Figure(go.Heatmap(z=z, x=list(range(num_experts)), y=list(range(num_experts)), colorscale="Magma_r",
                               zmin=0, colorbar=dict(title="N(i,j)/N(i)"), hovertemplate=hover))
    return layout(fig, f"Co-activation, layer {layer}", height=420, xaxis_title="expert j", yaxis_title="expert i",
                  xaxis_dtick=1, yaxis_dtick=1, yaxis_autorange="reversed")


def layer_usage(usage: pd.DataFrame) -> go.Figure:
    """Per MoE layer: how evenly experts are used (normalised entropy) and the busiest expert's load."""
    if usage.empty:
        return empty("No replayed routing yet")
    fig = go.Figure()
    fig.add_bar(x=[f"L{layer}" for layer in usage["layer"]], y=usage["normalized_entropy"], name="usage entropy / ln E",
                marker_color=SEQUENCE[0])
    fig.add_scatter(x=[f"L{layer}" for layer in usage["layer"]], y=usage["imbalance"], name="imbalance (max/mean)",
                    mode="lines+markers", yaxis="y2", line=dict(color=SEQUENCE[4]))
    return layout(fig, "Expert usage per layer", yaxis_range=[0, 1.05], yaxis_title="normalised entropy",
                  yaxis2=dict(overlaying="y", side="right", title="max/mean load", showgrid=False))


def agreement(df: pd.DataFrame, a: str, b: str) -> go.Figure:
    """Per layer: how often two checkpoints route the same token to the same experts."""
    if df.empty:
        return empty("The two checkpoints share no replayed tokens for this trajectory")
    fig = go.Figure()
    fig.add_bar(x=[f"L{layer}" for layer in df["layer"]], y=df["agreement"], name="|E_A ∩ E_B| / k",
                marker_color=SEQUENCE[0])
    fig.add_bar(x=[f"L{layer}" for layer in df["layer"]], y=df["top1_agreement"], name="same top-1",
                marker_color=SEQUENCE[1])
    return layout(fig, f"Routing agreement: {plain(a, 28)} vs {plain(b, 28)}", barmode="group", yaxis_range=[0, 1],
                  yaxis_tickformat=".0%")
