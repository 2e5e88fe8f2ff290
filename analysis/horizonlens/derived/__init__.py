"""Derived data: tables computed from the corpus (aggregates, the search index), never the source of truth.

Each derived dataset records the corpus state it was built from; a stale or damaged one is skipped and the
same figures are computed from the corpus.
"""

from horizonlens.derived.aggregates import aggregates_are_fresh, build_aggregates
from horizonlens.derived.build import build_all
from horizonlens.derived.search_index import INDEX_DIR, build_index, index_is_fresh, query_words
from horizonlens.derived.spec import (
    DerivedSpec,
    DerivedTable,
    Rollup,
)
from horizonlens.derived.spec import (
    is_fresh as derived_is_fresh,
)
from horizonlens.derived.spec import (
    update as update_derived,
)

__all__ = [
    "DerivedSpec", "DerivedTable", "INDEX_DIR", "Rollup", "aggregates_are_fresh", "build_aggregates", "build_all",
    "build_index", "derived_is_fresh", "index_is_fresh", "query_words", "update_derived"
]
