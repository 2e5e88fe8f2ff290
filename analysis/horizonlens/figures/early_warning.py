"""Early-warning figure: AUROC of each model signal and baseline for "a check fails within the next k steps"."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from horizonlens.figures.style import SEQUENCE, empty, layout

KIND_COLORS = {"signal": SEQUENCE[0], "baseline": "#7b7f87"}


def auroc_by_signal(df: pd.DataFrame) -> go.Figure:
    """AUROC per signal with its 95% bootstrap interval; baselines beside in grey; 0.5 = no better than chance."""
    df = df[df["auroc"].notna()] if not df.empty else df
    if df.empty:
        return empty("No replayed agent step has a check in the steps that follow")
    fig = go.Figure()
    for kind, part in df.groupby("kind", sort=False):
        auc = part["auroc"].astype(float)
        hi = part["upper"].astype(float).fillna(auc)
        lo = part["lower"].astype(float).fillna(auc)
        fig.add_scatter(x=part["signal"], y=auc, mode="markers", name=f"{kind}s",
                        marker=dict(size=11, color=KIND_COLORS.get(str(kind), SEQUENCE[1]),
                                    symbol="circle" if kind == "signal" else "diamond"),
                        error_y=dict(type="data", symmetric=False, array=hi - auc, arrayminus=auc - lo),
                        customdata=np.c_[lo, hi, part["n_pos"], part["n_neg"]],
                        hovertemplate="%{x}: AUROC %{y:.3f} (95% CI %{customdata[0]:.3f}–%{customdata[1]:.3f})"
                                      "<br>%{customdata[2]} steps before a failure, %{customdata[3]} not"
                                      "<extra></extra>")
    fig.add_hline(y=0.5, line=dict(color="#444", dash="dash", width=1), annotation_text="chance (0.5)",
                  annotation_position="bottom right")
    k = int(df["k"].iloc[0])
    return layout(fig, f"Does the signal at step t predict a failed check in t+1…t+{k}?", yaxis_title="AUROC",
                  yaxis_range=[0, 1], xaxis_title="signal at step t (grey: baselines without a model)",
                  margin=dict(l=50, r=20, t=80, b=45),
                  xaxis_categoryorder="array", xaxis_categoryarray=list(df["signal"]))
