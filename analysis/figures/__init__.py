"""Plotly figure builders: tidy tables in, go.Figure out (no Streamlit)."""
