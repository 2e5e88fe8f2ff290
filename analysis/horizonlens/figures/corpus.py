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


def horizon_histogram(counts: pd.DataFrame, edges: list[int], column: str = "n_steps") -> go.Figure:
    """Trajectories per length bin (log-spaced), stacked by outcome.

    `counts` has one row per (outcome, bin) with `trajectories` (CorpusStore.length_histogram over `edges`).
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
