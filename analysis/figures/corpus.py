"""Explore-page figures: horizon-length distribution and outcome/failure rates per group."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from horizonlens.figures.style import OUTCOME_COLORS, empty, layout, plain


def horizon_histogram(lengths: pd.DataFrame, column: str = "n_steps") -> go.Figure:
    """Trajectories per length bin (log-spaced), stacked by outcome."""
    if lengths.empty:
        return empty("No trajectories")
    values = lengths[column].clip(lower=1)
    edges = np.unique(np.round(np.logspace(0, np.log10(values.max() + 1), 30)).astype(int))
    fig = go.Figure()
    for outcome, part in lengths.groupby("outcome"):
        counts, _ = np.histogram(part[column].clip(lower=1), bins=edges)
        fig.add_bar(x=[f"{a}–{b - 1}" for a, b in zip(edges[:-1], edges[1:], strict=True)], y=counts,
                    name=plain(outcome), marker_color=OUTCOME_COLORS.get(str(outcome), "#888"))
    label = "steps" if column == "n_steps" else "tokens"
    return layout(fig, f"Horizon length ({label}) by outcome", barmode="stack", xaxis_title=label,
                  yaxis_title="trajectories")


def group_rates(groups: pd.DataFrame, column: str) -> go.Figure:
    """Success rate and failed-check rate per group (domain, agent, ...)."""
    if groups.empty:
        return empty("No trajectories")
    fig = go.Figure()
    labels = [plain(v) for v in groups[column]]  # domain/agent names come from the corpus
    fig.add_bar(x=labels, y=groups["success_rate"], name="success rate", marker_color=OUTCOME_COLORS["success"])
    fig.add_bar(x=labels, y=groups["failed_check_rate"], name="failed-check rate",
                marker_color=OUTCOME_COLORS["failure"])
    return layout(fig, f"Outcome and failed checks by {column}", barmode="group", yaxis_tickformat=".0%")
