"""The trajectory filter of the Explore page, as data, and the SQL conditions it stands for.

Like datasette's `Filters.build_where_clauses()`, a filter returns `(clauses, params)`: a list of SQL
conditions over the `trajectories` view aliased `t`, and their bound parameters. Callers join them at
the edge (`where_sql`), so extending a query with more conditions never pastes keywords around.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from horizonlens.corpus.search_index import query_words
from horizonlens.corpus.text import like_pattern, step_text_match, tool_names_sql
from horizonlens.errors import StoreError

Clauses = tuple[list[str], list[Any]]


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

    def clauses(self, word_index: bool = False) -> Clauses:
        """SQL conditions over `trajectories t` and their parameters; ([], []) when nothing is filtered.

        `word_index`: the corpus has a fresh word index (view `search_words`) for word searches.
        """
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
        if self.tool:
            clauses.append(f"t.trajectory_id IN (SELECT s.trajectory_id FROM steps s "
                           f"WHERE list_contains({tool_names_sql('s')}, ?))")
            params.append(self.tool)
        if self.labels:  # the `annotations` view exists in every store (empty without labels)
            clauses.append(f"t.trajectory_id IN (SELECT a.trajectory_id FROM annotations a "
                           f"WHERE a.label IN ({', '.join('?' for _ in self.labels)}))")
            params.extend(self.labels)
        words = query_words(self.text) if self.text else []
        if self.text and words and self.text_mode != "exact" and (word_index or self.text_mode == "words"):
            if not word_index:
                raise StoreError("this corpus has no up-to-date word index; run `horizonlens index CORPUS` "
                                 "or search for the exact text")
            clauses.append(f"t.trajectory_id IN (SELECT trajectory_id FROM search_words WHERE word IN "
                           f"({', '.join('?' for _ in words)}) GROUP BY trajectory_id HAVING count(*) = ?)")
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
