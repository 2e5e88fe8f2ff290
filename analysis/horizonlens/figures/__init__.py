"""Plotly figure builders: tidy tables in, go.Figure out (no Streamlit)."""

from horizonlens.figures import compounding, corpus, early_warning, routing, style

__all__ = ["compounding", "corpus", "early_warning", "routing", "style"]
