"""The benchmark report's chart: what each query costs as the corpus grows, beside its peers."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

QUERIES = (("explore", "Explore"), ("search_exact", "exact search"), ("open_trajectory", "open trajectory"))
VARIANTS = ("horizonlens", "polars", "duckdb_raw", "pandas")


def cost_vs_size(corpora: dict[str, dict[str, Any]]) -> go.Figure | None:
    """Median latency of each query and engine against corpus size (log-log); None with fewer than two sizes.

    `corpora` is the benchmark results' "corpora" entry: per corpus size, per query, per engine, `median_s`.
    """
    sizes = [int(n) for n in corpora]
    if len(sizes) < 2:
        return None
    fig = go.Figure()
    for key, label in QUERIES:
        for variant in VARIANTS:
            ys = [c.get(key, {}).get(variant, {}).get("median_s") for c in corpora.values()]
            if all(y is None for y in ys):
                continue
            fig.add_scatter(x=sizes, y=ys, mode="lines+markers", name=f"{label}: {variant}")
    fig.update_layout(xaxis_type="log", yaxis_type="log", xaxis_title="trajectories", yaxis_title="median seconds",
                      title="Query cost vs corpus size", template="plotly_white", height=500, width=900)
    return fig
