"""The views table of docs/corpus-format.md ("Querying"), made from `CorpusStore.views()` on the bundled corpus.

`python -m tests.support.docs_views` rewrites the table in the doc; tests/unit/test_store.py checks it is current.
"""

from __future__ import annotations

from horizonlens.query import open_store
from tests.support.corpora import REPO, SAMPLE_CORPUS

DOC = REPO / "docs" / "corpus-format.md"
HEADER = "| view | dataset | what it holds | columns |"


def views_table() -> str:
    """The markdown table: one row per view, its columns as `name TYPE`."""
    store = open_store(SAMPLE_CORPUS)
    lines = [HEADER, "|---|---|---|---|"]
    lines += [f"| `{v.name}` | {v.part} | {v.doc} | {', '.join(f'{c} {t}' for c, t in v.columns)} |"
              for v in store.views()]
    store.close()
    return "\n".join(lines) + "\n"


def main() -> None:
    text = DOC.read_text()
    start = text.index(HEADER)
    end = text.find("\n\n", start)
    DOC.write_text(text[:start] + views_table() + (text[end + 1:] if end >= 0 else ""))


if __name__ == "__main__":
    main()
