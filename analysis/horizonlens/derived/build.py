"""Everything derived from a corpus, built and refreshed together: search indexes, aggregates, tool use.

`horizonlens index CORPUS` calls `build_all`; an import calls `after_import` once its commit is published, so
that the aggregates (always) and the search indexes (when the corpus had them) cover the new files. Both are
derived datasets (derived/spec.py) and are updated incrementally: only new or rewritten step files are read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from horizonlens.derived.aggregates import build_aggregates
from horizonlens.derived.search_index import build_index
from horizonlens.derived.tool_use import build_tool_use
from horizonlens.storage.location import CorpusPath, as_location


def build_all(root: CorpusPath | str, full: bool = False, threads: int | None = None,
              log: Callable[[str], None] = lambda s: None, index: bool = True) -> dict[str, Any]:
    """Build (or bring up to date) the search indexes and the aggregates of a corpus; what each took.

    Without `index` the search index is left as it is (None in the result): what reads only the aggregates, such
    as a page's first load, needs no index, and at 10^6 runs building one takes most of an hour.
    """
    root = as_location(root)
    built = None
    if index:
        log("search index")
        built = build_index(root, full=full, threads=threads, log=log)
    log("aggregates")
    aggregates = build_aggregates(root, full=full, threads=threads, log=log)
    log("tool use")
    tools = build_tool_use(root, full=full, threads=threads, log=log)
    return {"index": built, "aggregates": {**aggregates.manifest, "computed": aggregates.computed,
                                           "seconds": round(aggregates.seconds, 2)},
            "tool_use": {"computed": tools.computed, "seconds": round(tools.seconds, 2)}}


def after_import(root: CorpusPath | str, search: bool) -> None:
    """Bring the derived data up to date after an import: the aggregates always, the search index if it existed."""
    root = as_location(root)
    if search:
        build_index(root)
    build_aggregates(root)
