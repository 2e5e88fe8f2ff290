"""Small rendering helpers shared by the pages: charts with downloads, untrusted text, tables."""

from __future__ import annotations

import io
import json
import re
from typing import Any, Callable

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from horizonlens.figures import formatting as fmt
from horizonlens.storage.csv_cells import csv_bytes

TEXT_PREVIEW = 4_000  # characters shown before a field is collapsed
TEXT_MAX = 200_000  # characters ever rendered in the page; beyond that, download only


# Every ASCII punctuation character can be backslash-escaped in CommonMark: escaping all of them keeps
# links, images, emphasis, headings, HTML, LaTeX ($) and Streamlit's :color[...] directives literal.
_MD_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# Escapes do not stop GFM's literal autolinks (they are found in the parsed text): a word joiner
# (U+2060, invisible) breaks their three patterns, "scheme://", "www." and "name@host".
_WWW = re.compile(r"(?i)(www)\.")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
WORD_JOINER = "\u2060"
LABEL_MAX = 2_000  # characters of untrusted text in one line of the page; the rest is cut with "…"


def md(text: object, limit: int = LABEL_MAX) -> str:
    """Untrusted text made inert for anything Streamlit renders as markdown: one line, shown as typed.

    The only way trajectory content, names from a corpus or a checkpoint, paths and error messages reach
    st.markdown, captions, headers, widget and expander labels, buttons, st.error/warning/info. Markdown
    stays literal (no link, image, emphasis, HTML), bare URLs and e-mail addresses are not turned into
    links, line breaks become spaces, and text longer than `limit` characters is cut.
    """
    s = str(text)
    if len(s) > limit:
        s = s[:limit] + "…"
    s = _CONTROL.sub(" ", s).strip()  # one line; no leading spaces (4 would start a code block)
    s = s.replace("://", f":{WORD_JOINER}//").replace("@", f"@{WORD_JOINER}")
    s = _WWW.sub(rf"\1{WORD_JOINER}.", s)
    return _MD_PUNCTUATION.sub(r"\\\1", s)


def show_error(message: object) -> None:
    """An error whose text is untrusted (a refused query, a bad file): first line as the error, the rest as code."""
    first, _, rest = str(message).partition("\n")
    st.error(md(first))
    if rest.strip():
        st.code(rest[:TEXT_MAX], language=None, wrap_lines=True)


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
        cols[2].download_button("CSV", lambda: csv_bytes(data), file_name=f"{key}.csv", mime="text/csv",
                                key=f"{key}_csv", on_click="ignore", help="Download the data behind the chart")
    return event


def table_downloads(df: pd.DataFrame, name: str, key: str, arrow: Any = None) -> None:
    """CSV and Parquet downloads of a table (Parquet from the Arrow table when given: nested types survive).

    The CSV's text cells are neutralised against spreadsheet formulas (storage.csv_cells), as every CSV export is.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = st.columns([8, 1.2, 1.6])
    cols[1].download_button("CSV", csv_bytes(df), file_name=f"{name}.csv", mime="text/csv", key=f"{key}_csv")
    buf = io.BytesIO()
    pq.write_table(arrow if arrow is not None else pa.Table.from_pandas(df, preserve_index=False), buf)
    cols[2].download_button("Parquet", buf.getvalue(), file_name=f"{name}.parquet",
                            mime="application/octet-stream", key=f"{key}_pq")


def lazy_tabs(sections: dict[str, Callable[[], None]], key: str, **options: Any) -> None:
    """Tabs of which only the open one runs: `sections` maps each tab's label to what draws it.

    A closed tab's queries and charts cost a first load nothing (a chart is the largest part of a page's
    first paint here, bench/RESULTS.md); opening a tab reruns the page, or the fragment the tabs are in.
    `options` go to `st.tabs` (`bind="query-params"` puts the open tab in the URL); `on_change` is always
    "rerun", which is what makes a tab lazy.
    """
    tabs = st.tabs(list(sections), key=key, on_change="rerun", **options)
    for tab, draw in zip(tabs, sections.values(), strict=True):
        if tab.open:
            with tab:
                draw()


def untrusted(label: str, text: str | None, key: str, language: str | None = None) -> None:
    """Trajectory content is untrusted (agents read web pages): always shown as literal text.

    The label is escaped here too (it may carry a tool's name). Long fields are collapsed with their size
    shown, and sent to the browser only once opened; huge ones are cut in the page and offered whole as a download.
    """
    if text is None or text == "":
        return
    size = len(text.encode("utf-8", errors="replace"))
    label = md(label, limit=200)
    if len(text) <= TEXT_PREVIEW:
        st.markdown(f"**{label}**")
        st.code(text, language=language, wrap_lines=True)
        return
    box = st.expander(f"{label} — {fmt.size(size)}, {len(text):,} characters", expanded=False, key=f"{key}_open",
                      on_change="rerun")
    with box:
        if not box.open:
            return
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
