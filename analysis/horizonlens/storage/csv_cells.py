"""CSV that is safe to open in a spreadsheet: text cells that would start a formula are neutralised.

A spreadsheet runs a cell that begins with `=`, `+`, `-` or `@` as a formula (and a tab or CR before them
can hide that), so exported trajectory text, labels or query results could run commands or leak data on the
analyst's machine. The OWASP rule is applied to every text cell: one that begins with one of those six
characters gets a leading `'`, which spreadsheets read as "this is text" and do not show. So the rule can be
undone exactly, a cell that is already such a quote followed by a dangerous start gets one more quote;
`restore` removes exactly one. Numbers are written as numbers.

Every CSV the package and the app write goes through `csv_bytes`.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import pandas as pd

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_DANGEROUS = r"^'*[=+\-@\t\r]"  # the same test as `_needs`, for Arrow columns


def _needs(text: str) -> bool:
    """Would a spreadsheet read this as a formula, or is it a neutralised one (so a quote must be added)?"""
    return text.lstrip("'")[:1] in TRIGGERS


def neutralise(text: str) -> str:
    """The cell as written to CSV: a leading `'` where a spreadsheet would otherwise run it."""
    return "'" + text if _needs(text) else text


def restore(text: str) -> str:
    """The text a neutralised cell stood for (the inverse of `neutralise`, for CSV files read back)."""
    return text[1:] if text.startswith("'") and _needs(text[1:]) else text


def _arrow_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return column
    dangerous = pc.fill_null(pc.match_substring_regex(column, _DANGEROUS), False)
    quoted = pc.binary_join_element_wise(pa.scalar("'", column.type), column, pa.scalar("", column.type))
    return pc.if_else(dangerous, quoted, column)


def _is_flat(table: pa.Table) -> bool:
    return not any(pa.types.is_nested(f.type) for f in table.schema)


def csv_bytes(data: pa.Table | pd.DataFrame) -> bytes:
    """A table as the bytes of a CSV file with every text cell neutralised (see the module docstring).

    Arrow tables keep their types; nested values (lists, structs), which CSV has no form for, are written
    as pandas writes them, so a cell such as `['=x']` starts with a bracket.
    """
    if isinstance(data, pa.Table) and _is_flat(data):
        safe = pa.table({name: _arrow_column(data.column(name)) for name in data.column_names})
        buf = io.BytesIO()
        import pyarrow.csv as pacsv

        pacsv.write_csv(safe, buf)
        return buf.getvalue()
    frame = data.to_pandas() if isinstance(data, pa.Table) else data.copy()
    for name in frame.columns:
        if frame[name].dtype == object or str(frame[name].dtype).startswith("string"):
            frame[name] = frame[name].map(_cell)
    return frame.to_csv(index=False).encode("utf-8")


def _cell(value: Any) -> Any:
    return neutralise(value) if isinstance(value, str) else value
