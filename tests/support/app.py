"""Driving the app's pages in Streamlit's AppTest, and reading what they render as markdown."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.support.corpora import REPO

MAIN = str(REPO / "app" / "main.py")  # the app in this checkout


def make_app(monkeypatch: pytest.MonkeyPatch, corpus: Path, checkpoint: Path | None = None,
             page: str | None = None, **params: str) -> AppTest:
    monkeypatch.setenv("HORIZONLENS_CORPUS", str(corpus))
    monkeypatch.setenv("HORIZONLENS_CHECKPOINT", str(checkpoint) if checkpoint else "")
    at = AppTest.from_file(MAIN, default_timeout=120)
    if page:
        if page == "import_data":  # a page whose url_path differs from its file name needs one run first
            at.run()
        at.switch_page(f"app_pages/{page}.py")
    for k, v in params.items():
        at.query_params[k] = v
    return at


def shown(markdown: str) -> str:
    """What the reader sees of escaped untrusted text: the characters typed (escapes and word joiners gone)."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


def page_markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


# GFM's literal-autolink patterns (mdast-util-gfm-autolink-literal): any match in rendered text becomes a link
AUTOLINKS = re.compile(r"(?i)https?://|www\.|[-.\w+]+@[-\w]+\.[-\w]")


def rendered_markdown(at: AppTest) -> list[str]:
    """Every string on the page (sidebar included) that Streamlit renders as markdown."""
    texts = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "title", "header", "subheader"):
        texts += [e.value for e in getattr(at, kind)] + [e.value for e in getattr(at.sidebar, kind)]
    for kind in ("button", "selectbox", "multiselect", "text_input", "slider", "expander", "checkbox", "toggle"):
        texts += [e.label for e in getattr(at, kind)]
    return texts


def assert_inert(texts: list[str]) -> None:
    """As a markdown renderer reads them: no link, no image, no raw HTML, no text GFM would turn into a link."""
    markdown_it = pytest.importorskip("markdown_it")
    renderer = markdown_it.MarkdownIt("commonmark")
    for text in texts:
        rendered = renderer.render(text)
        for tag in ("<a ", "<img", "<script", "<b>"):
            assert tag not in rendered, (tag, text)
        assert not AUTOLINKS.search(html.unescape(re.sub(r"<[^>]+>", "", rendered))), text
