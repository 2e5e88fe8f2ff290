"""Every view a corpus store has: its name, the dataset it shows, what it holds, and its columns.

The one list the SQL page, `horizonlens sql --help` and docs/corpus-format.md ("Querying") are made from; each
room describes its own views (the corpus tables here, the labels, the replays, the derived data).
"""

from __future__ import annotations

from dataclasses import dataclass

from horizonlens.derived.aggregates import SPEC as AGGREGATES
from horizonlens.derived.search_index import SPEC as SEARCH_INDEX
from horizonlens.derived.tool_use import SPEC as TOOL_USE
from horizonlens.labels.annotations import VIEWS as LABEL_VIEWS
from horizonlens.query.base import Store
from horizonlens.replays.views import REPLAY_VIEWS

CORPUS_VIEWS = {"trajectories": "one row per trajectory", "steps": "one row per step of each trajectory, in order"}


@dataclass(frozen=True)
class View:
    """A view of the store: its name, the dataset it shows, what it holds, and its columns (name, SQL type)."""

    name: str
    part: str
    doc: str
    columns: tuple[tuple[str, str], ...]


def catalog() -> dict[str, tuple[str, str]]:
    """Every view a store has, in a stable order: name -> (the dataset it shows, what it holds)."""
    return {**{v: ("corpus", d) for v, d in CORPUS_VIEWS.items()},
            **{v: ("labels", d) for v, d in LABEL_VIEWS.items()},
            **{v: ("replays", d) for v, d in REPLAY_VIEWS.items()},
            **{v: (SEARCH_INDEX.kind, d) for v, d in SEARCH_INDEX.views().items()},
            **{v: (AGGREGATES.kind, d) for v, d in AGGREGATES.views().items()},
            **{v: (TOOL_USE.kind, d) for v, d in TOOL_USE.views().items()}}


def describe(store: Store) -> list[View]:
    """The catalog with each view's columns as the store's connection has them."""
    docs = catalog()
    rows = store.query("SELECT table_name, column_name, data_type FROM information_schema.columns "
                       f"WHERE table_name IN ({', '.join('?' for _ in docs)}) ORDER BY ordinal_position",
                       list(docs)).to_pylist()
    columns: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        columns.setdefault(r["table_name"], []).append((r["column_name"], r["data_type"]))
    return [View(name, part, doc, tuple(columns.get(name, ()))) for name, (part, doc) in docs.items()]
