"""Plotly figure builders: tidy tables in, go.Figure out (no Streamlit); and how values are written for people.

Import the module you need (`from horizonlens.figures import routing`): the package imports nothing itself, so
`figures.formatting` stays cheap for the CLI.
"""
