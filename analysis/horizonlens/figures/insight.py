"""Figures of the corpus-level questions: failure modes, tool use, the routing map, probe and health.

Tidy tables in, small figures out: every figure is drawn from an aggregate (a row per mode, tool, layer or
bin), except the routing map, which draws at most a sample of points with WebGL (scattergl).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from horizonlens.figures.routing import ROW_PX
from horizonlens.figures.style import OUTCOME_COLORS, SEQUENCE, empty, layout, plain, vlines

MODES_SHOWN = 20  # modes named on a chart; the rest are in the table


def mode_facets(facets: pd.DataFrame, modes: pd.DataFrame, facet: str) -> go.Figure:
    """Share of each mode's steps by agent, teacher or domain (rows: modes; shade: share; hover: lift)."""
    part = facets[facets["facet"] == facet]
    if part.empty:
        return empty("No failed steps in this selection")
    order = [m for m in modes["mode"].head(MODES_SHOWN)]
    names = dict(zip(modes["mode"], modes["label"], strict=True))
    pivot = part.pivot_table(index="mode", columns="value", values="share", fill_value=0).reindex(order).fillna(0)
    lift = part.pivot_table(index="mode", columns="value", values="lift", fill_value=0).reindex(
        index=order, columns=pivot.columns).fillna(0)
    fig = go.Figure(go.Heatmap(z=pivot.to_numpy(), x=[plain(c, 30) for c in pivot.columns],
                               y=[plain(names[m], 40) for m in order], customdata=lift.to_numpy(),
                               colorscale="Blues", zmin=0, zmax=1, xgap=1, ygap=1,
                               colorbar=dict(title="share", tickformat=".0%", thickness=12),
                               hovertemplate=f"%{{y}}<br>{facet} %{{x}}: %{{z:.0%}} of the mode's steps "
                                             "(%{customdata:.2f}× its share among all failed steps)<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category", tickfont=dict(size=10))
    fig.update_xaxes(type="category", tickangle=-30)
    return layout(fig, f"Where each mode occurs: share of its failed steps by {facet}",
                  height=max(260, 130 + int(ROW_PX * 1.2 * len(order))), margin=dict(l=260, r=10, t=46, b=90))


def mode_positions(positions: pd.DataFrame, modes: pd.DataFrame) -> go.Figure:
    """Where along the horizon each mode's steps sit: share of its steps per tenth of the run."""
    if positions.empty:
        return empty("No failed steps in this selection")
    order = [m for m in modes["mode"].head(MODES_SHOWN)]
    names = dict(zip(modes["mode"], modes["label"], strict=True))
    pivot = positions.pivot_table(index="mode", columns="bin", values="steps", fill_value=0).reindex(
        index=order, columns=range(10)).fillna(0)
    share = pivot.to_numpy() / np.maximum(pivot.to_numpy().sum(1, keepdims=True), 1)
    fig = go.Figure(go.Heatmap(z=share, x=[f"{10 * b}–{10 * b + 10}%" for b in range(10)],
                               y=[plain(names[m], 40) for m in order], colorscale="Oranges", zmin=0, xgap=1, ygap=1,
                               colorbar=dict(title="share", tickformat=".0%", thickness=12),
                               hovertemplate="%{y}<br>%{x} of the run: %{z:.0%} of the mode's steps<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category", tickfont=dict(size=10))
    return layout(fig, "Where along the horizon each mode happens (step ÷ run length)", xaxis_title="part of the run",
                  height=max(260, 130 + int(ROW_PX * 1.2 * len(order))), margin=dict(l=260, r=10, t=46, b=60))


def tool_rates(tools: pd.DataFrame, top: int = 25) -> go.Figure:
    """Per tool (busiest first): error rate, and repeated, looping and overuse calls per 100 calls."""
    if tools.empty:
        return empty("No tool calls in this selection")
    part = tools.head(top)
    names = [plain(t, 30) for t in part["tool"]]
    calls = part["calls"].to_numpy(dtype=float)
    fig = go.Figure()
    for column, name, color in (("error_rate", "failed", SEQUENCE[4]), ("repeated_calls", "repeated", SEQUENCE[1]),
                                ("loop_calls", "in a loop", SEQUENCE[3]), ("overuse_calls", "overuse", SEQUENCE[0])):
        values = part[column].to_numpy(dtype=float) * (1 if column == "error_rate" else 1 / np.maximum(calls, 1))
        fig.add_bar(x=names, y=values, name=name, marker_color=color,
                    hovertemplate=f"%{{x}}: %{{y:.1%}} of its calls {name}<extra></extra>")
    return layout(fig, "Per tool: share of its calls that failed, repeated the previous call, sat in a loop, or went "
                       "beyond the successful runs' median", barmode="group", yaxis_tickformat=".0%",
                  yaxis_title="share of the tool's calls", height=380)


def tool_groups(groups: pd.DataFrame, facet: str) -> go.Figure:
    """Per agent/teacher/domain: calls per run, and the shares of runs with repeats, loops and overuse."""
    if groups.empty:
        return empty("No tool calls in this selection")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("calls per run", "share of runs with …"),
                        horizontal_spacing=0.12)
    names = [plain(v, 30) for v in groups[facet]]
    fig.add_bar(x=names, y=groups["calls_per_run"], name="calls per run", marker_color=SEQUENCE[6], row=1, col=1,
                showlegend=False)
    for column, name, color in (("runs_with_repeats_share", "repeats", SEQUENCE[1]),
                                ("runs_with_loops_share", "loops", SEQUENCE[3]),
                                ("runs_with_overuse_share", "overuse", SEQUENCE[0])):
        fig.add_bar(x=names, y=groups[column], name=name, marker_color=color, row=1, col=2)
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    return layout(fig, f"Tool use by {facet}", barmode="group", height=380, margin=dict(l=50, r=20, t=95, b=45))


def tool_horizon(horizon: pd.DataFrame) -> go.Figure:
    """Along the horizon (tenths of the run): error rate, repeated and looping shares of calls; one axis each."""
    if horizon.empty:
        return empty("No tool calls in this selection")
    fig = make_subplots(rows=1, cols=3, subplot_titles=("failed", "repeated", "in a loop"), horizontal_spacing=0.08)
    x = [f"{int(100 * p - 5)}%" for p in horizon["position"]]
    for i, (column, color) in enumerate((("error_rate", SEQUENCE[4]), ("repeated_share", SEQUENCE[1]),
                                         ("loop_share", SEQUENCE[3])), start=1):
        fig.add_scatter(x=x, y=horizon[column], mode="lines+markers", line=dict(color=color), row=1, col=i,
                        showlegend=False, hovertemplate="from %{x} of the run: %{y:.2%} of calls<extra></extra>")
        fig.update_yaxes(tickformat=".1%", rangemode="tozero", row=1, col=i)
    return layout(fig, "Along the horizon: share of calls (x: where in the run the call is)", height=320)


def routing_map(points: pd.DataFrame, color: str, title: str) -> go.Figure:
    """Replayed steps or runs placed by their routing signature (scattergl), one trace per colour value."""
    if points.empty:
        return empty("No replayed routing to place")
    fig = go.Figure()
    values = points[color].fillna("—").astype(str)
    order = values.value_counts().index.tolist()
    palette = OUTCOME_COLORS if color == "outcome" else {}
    for i, value in enumerate(order[:12]):
        part = points[values == value]
        where = [f"{plain(t, 40)} · step {int(s)}" if pd.notna(s) else plain(t, 40)
                 for t, s in zip(part["trajectory_id"], part["step"], strict=True)]
        fig.add_trace(go.Scattergl(x=part["x"], y=part["y"], mode="markers", name=plain(value, 40),
                                   marker=dict(size=5, opacity=0.7,
                                               color=palette.get(value, SEQUENCE[i % len(SEQUENCE)])),
                                   customdata=np.stack([part["trajectory_id"].astype(str),
                                                        part["step"].fillna(-1).astype(int)], axis=1),
                                   hovertext=where, hoverinfo="text"))
    fig.update_xaxes(showticklabels=False, title=None)
    fig.update_yaxes(showticklabels=False, title=None)
    return layout(fig, title, height=520, clickmode="event+select")


def probe(table: pd.DataFrame, target: str) -> go.Figure:
    """Probe accuracy per layer and over all layers, with its interval, beside the majority-class baseline."""
    part = table[table["target"] == target]
    if part.empty:
        return empty(f"No probe of {target}")
    x = ["all layers" if str(v) == "all" else f"L{v}" for v in part["layer"]]
    fig = go.Figure()
    fig.add_bar(x=x, y=part["accuracy"], name="routing probe", marker_color=SEQUENCE[0],
                error_y=dict(type="data", symmetric=False, array=part["upper"] - part["accuracy"],
                             arrayminus=part["accuracy"] - part["lower"]))
    fig.add_bar(x=x, y=part["baseline"], name="majority class", marker_color="#b9bdc4",
                error_y=dict(type="data", symmetric=False, array=part["baseline_upper"] - part["baseline"],
                             arrayminus=part["baseline"] - part["baseline_lower"]))
    return layout(fig, f"Does routing predict {target}? Grouped 5-fold accuracy (bars: 95% interval over runs)",
                  barmode="group", yaxis_range=[0, 1], yaxis_tickformat=".0%", height=340)


def health(table: pd.DataFrame, E: int) -> go.Figure:
    """Per layer along the horizon: rare experts, max/mean load and normalised entropy (small multiples).

    Each panel has a fixed colour range (stated in its title), so a healthy layer reads light in all three
    instead of taking the middle colour of a range stretched over nearly equal values.
    """
    part = table[table["bin"] >= 0]
    if part.empty:
        return empty("No replayed routing yet")
    worst_load = max(2.0, float(part["max_mean_load"].max() or 0))
    panels = (("rare", f"rare experts (< 1/{10 * E} of the load), 0–{E}", "Reds", 0.0, float(E)),
              ("max_mean_load", f"max / mean load, 1–{worst_load:.3g}", "Reds", 1.0, worst_load),
              ("normalized_entropy", "usage entropy ÷ ln E (0–1)", "Blues_r", 0.0, 1.0))
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.07, subplot_titles=[p[1] for p in panels])
    x = [f"{10 * b}%" for b in range(10)]
    for col, (column, _, scale, low, high) in enumerate(panels, start=1):
        pivot = part.pivot_table(index="layer", columns="bin", values=column).reindex(columns=range(10))
        fig.add_trace(go.Heatmap(z=pivot.to_numpy(), x=x, y=[f"L{v}" for v in pivot.index], coloraxis=None,
                                 colorscale=scale, zmin=low, zmax=high, showscale=False, xgap=1, ygap=1,
                                 hovertemplate="%{y}, from %{x} of the run: %{z:.3g}<extra></extra>"),
                      row=1, col=col)
    fig.update_yaxes(autorange="reversed", type="category", tickfont=dict(size=9))
    n = part["layer"].nunique()
    return layout(fig, "Routing health per layer along the horizon (x: part of the run; darker = worse)",
                  height=max(300, 140 + 12 * n), margin=dict(l=50, r=20, t=80, b=40))


def layer_expert_summary(load: pd.DataFrame, E: int) -> go.Figure:
    """Every layer x its experts ranked by load (busiest left): each one's share of the layer's assignments ÷ uniform.

    Expert ids are per layer (E17 of one layer and E17 of another are different networks), so columns are
    ranks, not ids: each row draws its layer's load profile, the same way at 16 experts and at 256. A balanced
    layer is pale throughout; a collapsing one is dark red at the left and blue across the rest. Hover names
    the expert at each rank.
    """
    if load.empty:
        return empty("No replayed routing yet")
    pivot = load.pivot_table(index="layer", columns="expert", values="share", fill_value=0)
    shares = pivot.to_numpy()
    order = np.argsort(-shares, axis=1, kind="stable")  # per layer: experts by load, busiest first
    ranked = np.take_along_axis(shares, order, axis=1) * E
    experts = np.asarray(pivot.columns)[order]
    layers = [f"L{v}" for v in pivot.index]
    hover = np.array([[f"{layer} · rank {j + 1}: E{int(e)}, {r:.2f}× uniform" for j, (e, r) in
                       enumerate(zip(row_e, row_r, strict=True))]
                      for layer, row_e, row_r in zip(layers, experts, ranked, strict=True)], dtype=object)
    fig = go.Figure(go.Heatmap(z=np.log2(np.clip(ranked, 1 / 8, 8)), x=np.arange(1, ranked.shape[1] + 1), y=layers,
                               customdata=hover, colorscale="RdBu_r", zmin=-3, zmax=3,
                               colorbar=dict(title="× uniform", tickvals=[-3, -1, 0, 1, 3],
                                             ticktext=["1/8×", "1/2×", "1×", "2×", "8×"], thickness=12),
                               hovertemplate="%{customdata}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category", tickfont=dict(size=9))
    fig.update_xaxes(title=f"the layer's {E} experts ranked by load (1 = busiest); hover names each",
                     tickfont=dict(size=9))
    return layout(fig, "All layers: each layer's experts by load ÷ uniform (red: more than 1/E, blue: less)",
                  height=max(260, 130 + ROW_PX * len(pivot)), margin=dict(l=50, r=10, t=46, b=60))


def around_failures(around: pd.DataFrame) -> go.Figure:
    """Surprisal and router entropy k agent steps before/after failed vs passed checks; one panel per signal."""
    if around.empty:
        return empty("No replayed agent steps around checks")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("surprisal (nats)", "router entropy (nats)"),
                        horizontal_spacing=0.1)
    colors = {"failed check": OUTCOME_COLORS["failure"], "passed check": OUTCOME_COLORS["success"]}
    for col, signal in ((1, "surprisal"), (2, "entropy")):
        for anchor, part in around.groupby("anchor"):
            fig.add_scatter(x=part["step_offset"], y=part[signal], mode="lines+markers", name=str(anchor),
                            line=dict(color=colors.get(str(anchor), SEQUENCE[0])), showlegend=col == 1,
                            legendgroup=str(anchor), row=1, col=col,
                            hovertemplate="%{x:+d} steps: %{y:.3f}<extra>" + str(anchor) + "</extra>")
        fig.add_vline(x=0, line=dict(color="#888", dash="dot"), row=1, col=col)
    fig.update_xaxes(title="agent steps from the check", dtick=1)
    return layout(fig, "Around checks: model signals before and after failed vs passed checks", height=350,
                  margin=dict(l=50, r=20, t=95, b=45))


def signals_small_multiples(signals: pd.DataFrame, drift: pd.DataFrame | None, failed_steps: list[int]) -> go.Figure:
    """Surprisal, router entropy and routing drift per step, one panel and one axis each (failed checks dotted)."""
    if signals.empty:
        return empty("No replayed steps")
    panels = [("surprisal", "surprisal (nats)", signals), ("entropy", "router entropy (nats)", signals)]
    if drift is not None and not drift.empty:
        panels.append(("drift", "routing drift (JS distance)", drift))
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[p[1] for p in panels])
    for row, (column, name, frame) in enumerate(panels, start=1):
        fig.add_scatter(x=frame["step"], y=frame[column], mode="lines+markers", name=name, showlegend=False,
                        line=dict(color=SEQUENCE[row - 1]), marker=dict(size=4), row=row, col=1)
        fig.update_yaxes(nticks=4, tickformat=".2~f", row=row, col=1)
    vlines(fig, failed_steps, dict(color=OUTCOME_COLORS["failure"], width=1, dash="dot"),
           rows=range(1, len(panels) + 1))
    fig.update_xaxes(title="step", row=len(panels), col=1)
    return layout(fig, "Model signals along the horizon (dotted red: failed checks)", height=150 + 150 * len(panels))
