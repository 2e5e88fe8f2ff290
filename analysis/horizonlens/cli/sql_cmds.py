"""`horizonlens sql`: one read-only SELECT over a corpus's views."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from typer.core import TyperCommand

from horizonlens.cli.base import app, fail


class _SqlCommand(TyperCommand):
    """`sql`, whose help ends with the views a query can use (listed by the store, only when help is shown)."""

    @property
    def epilog(self) -> str:
        """The views, from the store's own list (query/catalog.py)."""
        from horizonlens.query.catalog import catalog

        return ("Views: " + ", ".join(catalog()) + ". The SQL page lists their columns; so does "
                "docs/corpus-format.md.")

    @epilog.setter
    def epilog(self, value: str | None) -> None:
        pass  # the epilog is computed, never set


@app.command(cls=_SqlCommand)
def sql(corpus: Annotated[str, typer.Argument(help="Corpus directory or s3://bucket/prefix.")],
        query: Annotated[str, typer.Argument(help="One read-only SELECT over the corpus views (listed below).")],
        row_cap: Annotated[int, typer.Option(help="At most this many rows.")] = 1000,
        timeout: Annotated[float, typer.Option(help="Stop the query after this many seconds.")] = 30.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print rows as JSON lines.")] = False) -> None:
    """Run a read-only SQL query over a corpus."""
    from horizonlens.corpus.files import CorpusError
    from horizonlens.query.console import SqlError, run_sql
    from horizonlens.query.store import open_store

    try:
        store = open_store(corpus)
        result = run_sql(store, query, row_cap=row_cap, timeout_s=timeout)
    except (CorpusError, SqlError) as exc:
        fail(str(exc))
    if as_json:
        for row in result.table.to_pylist():
            typer.echo(json.dumps(row, default=str, ensure_ascii=False))
    else:
        typer.echo(result.table.to_pandas().to_string(index=False, max_colwidth=60))
    for note in result.notes:  # rows stopped by a cap, cells cut to fit
        typer.secho(f"({note})", err=True)
