"""docs/security.md states the limits the code enforces: each constant's value appears in it."""

from __future__ import annotations

import pytest

from horizonlens.ingest import label_files
from horizonlens.model import files, rollout_files
from horizonlens.query import console as sql
from horizonlens.replays import codec
from horizonlens.storage import manifest
from tests.support.corpora import REPO

DOC = (REPO / "docs" / "security.md").read_text()


@pytest.mark.parametrize("value, unit", [
    (sql.MAX_SQL_CHARS, "characters"), (sql.MAX_SQL_TOKENS, "tokens"), (sql.MAX_NESTING, "deep"),
    (sql.MAX_OPERATOR_RUN, "operators in a row"), (sql.MAX_CELL_CHARS, "characters"),
    (sql.MAX_LIST_ITEMS, "items"), (sql.MAX_NESTED_CHARS, "characters"), (sql.DEFAULT_RESULT_BYTES // 2**20, "MB"),
    (files.META_MAX_BYTES // 2**20, "MB"), (files.MAX_ENTRIES, "entries"),
    (manifest.MAX_MANIFEST_BYTES // 2**20, "MB"), (codec.MAX_TOP_K, "experts per token"),
    (rollout_files.MAX_TOKENS, "token ids"), (rollout_files.MAX_ROUTING_BYTES // 2**20, "MB"),
    (label_files.MAX_FILE_BYTES // 2**20, "MB"), (label_files.CSV_FIELD_MAX // 2**20, "MB"),
])
def test_limit_is_documented(value: int, unit: str) -> None:
    assert f"{value:,} {unit}" in DOC.replace("**", ""), f"{value:,} {unit}"


def test_ui_limits_documented() -> None:
    ui = pytest.importorskip("horizonlens.app.ui")
    panel = pytest.importorskip("horizonlens.app.annotations_panel")
    params = pytest.importorskip("horizonlens.app.params")
    assert f"{panel.PAGE:,} labels" in DOC.replace("**", "") and f"{params.MAX_ID_CHARS:,} characters" in DOC
    from horizonlens.figures.style import plain

    assert f"{ui.LABEL_MAX:,} characters" in DOC and f"{ui.TEXT_MAX:,} characters" in DOC
    assert plain("x" * 100).endswith("…") and len(plain("x" * 100)) == 61 and "after 60 characters" in DOC
