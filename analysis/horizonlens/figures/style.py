"""Shared colours and layout so every chart reads the same way."""

from __future__ import annotations

from collections.abc import Iterable

import plotly.graph_objects as go
import plotly.io as pio

STATUS_COLORS = {"passed": "#2e9d5b", "failed": "#d43d3d", "no check": "#c9ccd1"}
OUTCOME_COLORS = {"success": "#2e9d5b", "failure": "#d43d3d", "unknown": "#8a8f98"}
TEMPLATE = "plotly_white"
SEQUENCE = ["#3b6fd8", "#e08a1e", "#2e9d5b", "#a04cc2", "#d43d3d", "#1aa3a3", "#7b7f87", "#c7a21a"]


def plain(text: object, limit: int = 60) -> str:
    """Untrusted text (a domain, agent, tool or token from a corpus) for a Plotly title, label, legend or hover.

    Plotly reads a subset of HTML in all of these (`<a href>`, `<b>`, `<br>`, entities): `&`, `<` and `>`
    become entities, which Plotly shows as the characters typed. Longer text is cut with "…".
    """
    s = str(text)
    if len(s) > limit:
        s = s[:limit] + "…"
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def use_house_template() -> None:
    """Make TEMPLATE Plotly's default, which every new figure takes when it is created.

    A default rather than a property set on each figure: assigning the template to a figure makes Plotly
    validate all of it (defaults for every trace type) on every chart, while a new figure takes the default
    ready-made. Streamlit installs its own default when it is imported; the app imports it first, so this
    module's import (and each `layout` call) wins.
    """
    if pio.templates.default != TEMPLATE:
        pio.templates.default = TEMPLATE


use_house_template()
TITLE_PX = 36  # the band at the top of a figure that holds its title


def layout(fig: go.Figure, title: str | None = None, height: int = 360, **kw: object) -> go.Figure:
    """Apply the house layout and any Plotly layout overrides.

    The title sits in a band at the top of the figure and the legend (horizontal) right below it, both placed
    in container coordinates, so that a legend that wraps onto several rows pushes the plot down (Plotly
    enlarges the top margin to fit it) instead of running into the title.
    """
    band = TITLE_PX if title else 0
    kw.setdefault("margin", dict(l=50, r=20, t=band + 10, b=45))
    use_house_template()  # for the next figures, should Streamlit have been imported since
    fig.update_layout(
        title=dict(text=title, x=0, xref="container", xanchor="left", y=1, yref="container", yanchor="top",
                   pad=dict(t=10, l=12)) if title else None,
        height=height,
        legend=dict(orientation="h", x=0, xref="container", xanchor="left", y=1 - (band + 2) / height,
                    yref="container", yanchor="top"),
        **kw)
    return fig


def empty(message: str, height: int = 240) -> go.Figure:
    """A figure that says why there is nothing to plot (instead of a blank or NaN chart)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=14, color="#6b7078"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return layout(fig, height=height)


def vlines(fig: go.Figure, xs: Iterable[float], line: dict[str, object], rows: Iterable[int] = ()) -> go.Figure:
    """Vertical lines at each x across the plot, or across each of these subplot rows (first column).

    The shapes `add_vline` would add, in one assignment: `add_vline` copies every shape already there on each
    call, so marking every failed check of a run with a few hundred steps one line at a time took seconds.
    """
    refs = [("x", "y domain")]
    if rows:
        subs = [fig.get_subplot(row, 1) for row in rows]
        refs = [(s.xaxis.plotly_name.replace("axis", ""), s.yaxis.plotly_name.replace("axis", "") + " domain")
                for s in subs]
    xs = list(xs)
    new = [dict(type="line", xref=xref, yref=yref, x0=x, x1=x, y0=0, y1=1, line=line)
           for xref, yref in refs for x in xs]
    fig.layout.shapes = [*fig.layout.shapes, *new]
    return fig
