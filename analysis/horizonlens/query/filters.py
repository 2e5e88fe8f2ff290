"""The trajectory filter of the Explore page, as data, and the SQL conditions it stands for.

Like datasette's `Filters.build_where_clauses()`, a filter returns `(clauses, params)`: a list of SQL
conditions over the `trajectories` view aliased `t`, and their bound parameters. Callers join them at
the edge (`where_sql`), so extending a query with more conditions never pastes keywords around.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from horizonlens.corpus.text import like_pattern, step_text_match, tool_names_sql
from horizonlens.derived.search_index import query_words
from horizonlens.errors import StoreError
from horizonlens.storage.quoting import quote_ident

Clauses = tuple[list[str], list[Any]]
# The filter fields that are columns of the aggregate cubes (derived/aggregates.py: the facets and the outcome).
FACET_FIELDS = frozenset({"domains", "agents", "teachers", "sources", "outcomes"})


@dataclass(frozen=True)
class FilterContext:
    """What the store offers a filter beyond the corpus tables (derived views, a resolved exact search).

    A filter that needs something else (say, a label view) adds a field here and checks it in `clauses`.
    """

    word_index: bool = False  # the search index's views (`search_words`, `search_docs`, ...) are up to date
    aggregates: bool = False  # view `agg_trajectories` is queryable (per-trajectory tool lists)
    # a table of the store's database holding the trajectories (column trajectory_id) the filter's text matches,
    # resolved through the search index (query/search.py)
    text_table: str | None = None
    text_matches_all: bool = False  # ... and it holds every trajectory (the text filters nothing out)
    over_list: bool = False  # `t` is the store's in-memory list, whose gid column `text_table` also has


@dataclass
class TrajectoryFilter:
    """What the Explore page filters on; every field optional."""

    domains: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    teachers: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    min_steps: int | None = None
    max_steps: int | None = None
    has_failed_checks: bool | None = None
    tool: str | None = None  # trajectories where some step calls this tool
    text: str | None = None  # full-text query over task and step content (see text_mode)
    text_mode: str = "auto"  # words: all words occur (word index); exact: literal substring (scan); auto
    task_id: str | None = None
    labels: list[str] = field(default_factory=list)  # trajectories with a current label (any step) among these

    def search_mode(self, word_index: bool) -> str:
        """How the text is matched: "words" (every word, through the index) or "exact" (the literal text).

        `auto` means words when the corpus has an up-to-date index and the text has a word; "words" with no
        word in the text means exact.
        """
        wants_words = self.text_mode != "exact" and (word_index or self.text_mode == "words")
        return "words" if wants_words and query_words(self.text or "") else "exact"

    def facet_only(self) -> bool:
        """Whether only facet columns (domain, agent, teacher, source, outcome) are filtered on.

        Such a filter can be answered from the aggregate cubes, whose cells are facet combinations.
        """
        return self.uses_only(FACET_FIELDS)

    def uses_only(self, names: frozenset[str]) -> bool:
        """Whether every field set (not at its default) is one of `names`; a field added later counts too."""
        default = TrajectoryFilter()
        return all(getattr(self, f.name) == getattr(default, f.name) for f in fields(self) if f.name not in names)

    def clauses(self, ctx: FilterContext | None = None) -> Clauses:
        """SQL conditions over `trajectories t` and their parameters; ([], []) when nothing is filtered.

        `ctx` says which derived views the store has (see FilterContext); without it, searches scan.
        """
        ctx = ctx or FilterContext()
        word_index = ctx.word_index
        clauses: list[str] = []
        params: list[Any] = []
        for column, values in (("domain", self.domains), ("agent", self.agents), ("teacher", self.teachers),
                               ("source", self.sources), ("outcome", self.outcomes)):
            if values:
                clauses.append(f"t.{column} IN ({', '.join('?' for _ in values)})")
                params.extend(values)
        if self.min_steps is not None:
            clauses.append("t.n_steps >= ?")
            params.append(int(self.min_steps))
        if self.max_steps is not None:
            clauses.append("t.n_steps <= ?")
            params.append(int(self.max_steps))
        if self.has_failed_checks is not None:
            clauses.append("t.n_failed_checks > 0" if self.has_failed_checks else "coalesce(t.n_failed_checks, 0) = 0")
        if self.task_id:
            clauses.append("t.task_id = ?")
            params.append(self.task_id)
        if self.tool and ctx.aggregates:
            clauses.append("t.trajectory_id IN (SELECT a.trajectory_id FROM agg_trajectories a "
                           "WHERE list_contains(a.tools, ?))")
            params.append(self.tool)
        elif self.tool:
            clauses.append(f"t.trajectory_id IN (SELECT s.trajectory_id FROM steps s "
                           f"WHERE list_contains({tool_names_sql('s')}, ?))")
            params.append(self.tool)
        if self.labels:  # the `annotations` view exists in every store (empty without labels)
            clauses.append(f"t.trajectory_id IN (SELECT a.trajectory_id FROM annotations a "
                           f"WHERE a.label IN ({', '.join('?' for _ in self.labels)}))")
            params.extend(self.labels)
        if self.text and ctx.text_table:
            if not ctx.text_matches_all:  # a text every trajectory has filters nothing out
                key = "gid" if ctx.over_list else "trajectory_id"
                clauses.append(f"t.{key} IN (SELECT h.{key} FROM {quote_ident(ctx.text_table)} h)")
        elif self.text and self.search_mode(word_index) == "words":
            if not word_index:
                raise StoreError("this corpus has no up-to-date word index; run `horizonlens index CORPUS` "
                                 "or search for the exact text")
            words = query_words(self.text)
            clauses.append(f"t.trajectory_id IN (SELECT d.trajectory_id FROM (SELECT word, unit, unnest(docs) AS doc "
                           f"FROM search_words WHERE word IN ({', '.join('?' for _ in words)})) w JOIN search_docs d "
                           f"USING (unit, doc) GROUP BY d.trajectory_id HAVING count(DISTINCT w.word) = ?)")
            params.extend([*words, len(words)])
        elif self.text:
            pattern = like_pattern(self.text)
            match, n = step_text_match("s")
            clauses.append(f"(t.task ILIKE ? ESCAPE '\\' OR t.trajectory_id IN "
                           f"(SELECT s.trajectory_id FROM steps s WHERE {match}))")
            params.extend([pattern] * (n + 1))
        return clauses, params


def where_sql(clauses: list[str], keyword: str = "WHERE") -> str:
    """Join conditions after `keyword` (WHERE, or AND to extend an existing WHERE); '' without any."""
    return f" {keyword} " + " AND ".join(clauses) if clauses else ""
