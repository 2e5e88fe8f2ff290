"""Explore-page figures: horizon-length distribution and outcome/failure rates per group."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from horizonlens.figures.style import OUTCOME_COLORS, empty, layout, plain


def length_edges(max_length: int | None) -> list[int]:
    """Log-spaced bin edges from 1 to just above the longest trajectory (about 30 bins)."""
    top = max(int(max_length or 1), 1)
    return [int(e) for e in np.unique(np.round(np.logspace(0, np.log10(top + 1), 30)).astype(int))]


def horizon_histogram(counts: pd.DataFrame, edges: list[int], column: str = "n_steps",
                      selection: str | None = None) -> go.Figure:
    """Trajectories per length bin (log-spaced), stacked by outcome.

    `counts` has one row per (outcome, bin) with `trajectories` (metrics.overview.length_histogram over `edges`);
    `selection` names what they are, e.g. "154 of 2,400 trajectories", when a filter chose them.
    """
    if counts.empty or len(edges) < 2:
        return empty("No trajectories")
    labels = [f"{a}–{b - 1}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    fig = go.Figure()
    for outcome, part in counts.groupby("outcome", sort=True):
        y = np.zeros(len(labels), dtype=int)
        y[part["bin"].to_numpy(dtype=int)] = part["trajectories"].to_numpy(dtype=int)
        fig.add_bar(x=labels, y=y, name=plain(outcome), marker_color=OUTCOME_COLORS.get(str(outcome), "#888"))
    label = "steps" if column == "n_steps" else "tokens"
    scope = f" — {selection}" if selection else ""
    return layout(fig, f"Horizon length ({label}) by outcome{scope}", barmode="stack", xaxis_title=label,
                  yaxis_title="trajectories")


def group_rates(groups: pd.DataFrame, column: str, whole: pd.DataFrame | None = None,
                selection: str | None = None) -> go.Figure:
    """Success rate and failed-check rate per group (domain, agent, ...).

    `whole`: the same rates over the whole corpus, drawn as markers on each bar so a filtered selection is read
    against it; `selection` names what the bars are, e.g. "154 of 2,400 trajectories".
    """
    if groups.empty:
        return empty("No trajectories")
    fig = go.Figure()
    labels = [plain(v) for v in groups[column]]  # domain/agent names come from the corpus
    fig.add_bar(x=labels, y=groups["success_rate"], name="success rate", marker_color=OUTCOME_COLORS["success"],
                offsetgroup="success")
    fig.add_bar(x=labels, y=groups["failed_check_rate"], name="failed-check rate",
                marker_color=OUTCOME_COLORS["failure"], offsetgroup="failed")
    if whole is not None:
        ref = whole.set_index(column).reindex(groups[column])
        for rate, group in (("success_rate", "success"), ("failed_check_rate", "failed")):
            fig.add_scatter(x=labels, y=ref[rate].to_numpy(), mode="markers", name="whole corpus",
                            legendgroup="whole", showlegend=group == "success", offsetgroup=group,
                            marker=dict(symbol="line-ew", size=28, color="#222", line=dict(width=3, color="#222")),
                            hovertemplate="whole corpus: %{y:.1%}<extra></extra>")
    scope = f" — {selection}" if selection else ""
    return layout(fig, f"Outcome and failed checks by {column}{scope}", barmode="group", yaxis_tickformat=".0%",
                  scattermode="group")
