"""Small rendering helpers shared by the pages: charts with downloads, untrusted text, tables."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

TEXT_PREVIEW = 4_000  # characters shown before a field is collapsed
TEXT_MAX = 200_000  # characters ever rendered in the page; beyond that, download only


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-!|<>~$])")


def md(text: object) -> str:
    """Escape untrusted text for st.markdown/caption/labels: markdown (links, images) stays literal."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def chart(fig: go.Figure, caption: str, key: str, data: pd.DataFrame | None = None, **kwargs: Any) -> Any:
    """A Plotly chart with a one-line reading guide and HTML/CSV downloads (PNG is in the chart's toolbar)."""
    event = st.plotly_chart(fig, key=key, config={"displaylogo": False,
                                                  "toImageButtonOptions": {"format": "png", "filename": key}}, **kwargs)
    cols = st.columns([5, 1.4, 1.4])
    cols[0].caption(caption)
    # Deferred: the files are built only when clicked (a step table's CSV can be megabytes), without a rerun.
    cols[1].download_button("HTML", lambda: fig.to_html(include_plotlyjs="cdn", full_html=True),
                            file_name=f"{key}.html", mime="text/html", key=f"{key}_html", on_click="ignore",
                            help="Download the interactive chart")
    if data is not None:
        cols[2].download_button("CSV", lambda: data.to_csv(index=False), file_name=f"{key}.csv", mime="text/csv",
                                key=f"{key}_csv", on_click="ignore", help="Download the data behind the chart")
    return event


def table_downloads(df: pd.DataFrame, name: str, key: str, arrow: Any = None) -> None:
    """CSV and Parquet downloads of a table (Parquet from the Arrow table when given: nested types survive)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = st.columns([8, 1.2, 1.6])
    cols[1].download_button("CSV", df.to_csv(index=False), file_name=f"{name}.csv", mime="text/csv", key=f"{key}_csv")
    buf = io.BytesIO()
    pq.write_table(arrow if arrow is not None else pa.Table.from_pandas(df, preserve_index=False), buf)
    cols[2].download_button("Parquet", buf.getvalue(), file_name=f"{name}.parquet",
                            mime="application/octet-stream", key=f"{key}_pq")


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def untrusted(label: str, text: str | None, key: str, language: str | None = None) -> None:
    """Trajectory content is untrusted (agents read web pages): always shown as literal text.

    Long fields are collapsed with their size shown; huge ones are cut in the page and offered whole
    as a download.
    """
    if text is None or text == "":
        return
    size = len(text.encode("utf-8", errors="replace"))
    if len(text) <= TEXT_PREVIEW:
        st.markdown(f"**{label}**")
        st.code(text, language=language, wrap_lines=True)
        return
    with st.expander(f"{label} — {human_size(size)}, {len(text):,} characters", expanded=False):
        shown = text[:TEXT_MAX]
        st.code(shown, language=language, wrap_lines=True)
        if len(text) > TEXT_MAX:
            st.caption(f"Showing the first {TEXT_MAX:,} characters.")
            st.download_button("Download the whole field", text.encode("utf-8", errors="replace"),
                               file_name=f"{key}.txt", mime="text/plain", key=f"{key}_dl")


def pretty_arguments(arguments: str | None) -> tuple[str, str | None]:
    """Tool-call arguments pretty-printed as JSON when they parse, else as written."""
    if not arguments:
        return "", None
    try:
        return json.dumps(json.loads(arguments), indent=2, ensure_ascii=False), "json"
    except (json.JSONDecodeError, TypeError):
        return arguments, None
