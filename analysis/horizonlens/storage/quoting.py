"""Quoting for the few places SQL text is built: identifiers, and literals that cannot be parameters.

Identifiers come from allow-lists; the literals are the ones DuckDB cannot take as bound parameters
(paths in `read_parquet`, settings). Values from users are always bound parameters, never quoted into SQL.
"""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (the one place identifiers are quoted)."""
    return '"' + name.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    """Quote a string literal for statements that cannot bind parameters (file paths, settings)."""
    return "'" + value.replace("'", "''") + "'"


def sql_string_list(values: list[str]) -> str:
    """A DuckDB list literal of strings, e.g. the files of one table for `read_parquet`."""
    return "[" + ", ".join(sql_string(v) for v in values) + "]"
