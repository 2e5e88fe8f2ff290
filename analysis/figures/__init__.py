"""Plotly figure builders: tidy tables in, go.Figure out (no Streamlit)."""

from horizonlens.figures import compounding, corpus, routing, style

__all__ = ["compounding", "corpus", "routing", "style"]
