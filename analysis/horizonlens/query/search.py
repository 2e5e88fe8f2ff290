"""Text search through the search index: postings become trajectories of the in-memory list, checked where needed.

The index numbers the trajectories of each of its units (derived/search_index.py). Once per corpus state the store
maps every (unit, doc) to `gid`, the trajectory's number in its in-memory list (query/listing.py), so that the
postings of words and pairs, of steps and of tasks, all meet in one numbering: a query is a few lookups in sorted
postings, then unions and intersections of boolean arrays over the list. Only an exact-text query the postings
cannot answer alone (derived/search_index.needle_plan) reads text: the corpus's own Parquet, for the trajectories
the postings left, by the same ILIKE the plain scan uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from horizonlens.corpus.text import like_pattern, step_text_match
from horizonlens.derived.search_index import Cond, NeedlePlan, PairCond, needle_plan
from horizonlens.query.base import Store
from horizonlens.storage.quoting import quote_ident

# Terms named inline in one postings lookup; a condition matching more is looked up in batches of this size, the
# most frequent first, so that a query matching almost everything stops once every trajectory is found.
TERMS_PER_LOOKUP = 2_000
CHECK_SHARE = 0.5  # when more candidates than this share of the corpus are left, the check reads every text


@dataclass(frozen=True)
class TextHits:
    """The trajectories a text query matches, as gids of the list (sorted), and how they were found."""

    gids: np.ndarray
    checked: int  # trajectories whose Parquet text was read to confirm them (0: the postings alone answered)
    exact_plan: bool  # the query was one the postings answer alone


class TextSearch:
    """The search index of one corpus state, over the in-memory trajectory list `list_table` (gid, trajectory_id).

    `table_of(gids)` puts gids into a new table of the store's database and returns its name.
    """

    def __init__(self, store: Store, list_table: str, table_of: Callable[[np.ndarray], str]):
        self.store = store
        self.list_table = list_table
        self.table_of = table_of
        self.n = int(store.scalar(f"SELECT count(*) FROM {quote_ident(list_table)}") or 0)
        docs = store.query(f"SELECT d.unit, d.doc, l.gid FROM search_docs d JOIN {quote_ident(list_table)} l "
                           f"USING (trajectory_id)")
        unit = docs["unit"].to_numpy()
        doc = docs["doc"].to_numpy().astype(np.int64)
        self.units = np.unique(unit)
        k = np.searchsorted(self.units, unit)
        sizes = np.zeros(len(self.units), dtype=np.int64)
        np.maximum.at(sizes, k, doc + 1)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        # (unit, doc) -> gid, units one after another; -1 where a unit numbers a trajectory the list lacks
        self.flat = np.full(int(self.offsets[-1]), -1, dtype=np.int64)
        self.flat[self.offsets[k] + doc] = docs["gid"].to_numpy()

    # --- postings -----------------------------------------------------------------------------------------------
    def _gids(self, rows: pa.Table) -> np.ndarray:
        """The gids of (unit, doc) rows."""
        if not rows.num_rows:
            return np.zeros(0, dtype=np.int64)
        unit = rows["unit"].to_numpy()
        k = np.minimum(np.searchsorted(self.units, unit), max(len(self.units) - 1, 0))
        known = self.units[k] == unit if len(self.units) else np.zeros(len(unit), dtype=bool)
        gids = self.flat[self.offsets[k[known]] + rows["doc"].to_numpy()[known]]
        return gids[gids >= 0]

    def _union(self, view: str, column: str, terms: list[tuple[str, int]]) -> np.ndarray:
        """Trajectories (a mask over the list) holding any of `terms` ((term, trajectories), any order)."""
        mask = np.zeros(self.n, dtype=bool)
        ordered = [t for t, _ in sorted(terms, key=lambda t: -t[1])]
        for start in range(0, len(ordered), TERMS_PER_LOOKUP):
            batch = ordered[start:start + TERMS_PER_LOOKUP]
            rows = self.store.query(f"SELECT unit, doc FROM {view} WHERE {column} IN "
                                    f"({', '.join('?' for _ in batch)})", batch)
            mask[self._gids(rows)] = True
            if mask.all():
                break
        return mask

    def words(self, words: list[str]) -> TextHits:
        """Trajectories containing every one of `words` (lower-cased index words) as a whole word."""
        if not words:
            return TextHits(np.arange(self.n), 0, True)
        rows = self.store.query(f"SELECT word, trajectories FROM search_vocab WHERE word IN "
                                f"({', '.join('?' for _ in words)})", list(words))
        counts = dict(zip(rows["word"].to_pylist(), rows["trajectories"].to_pylist(), strict=True))
        if len(counts) < len(set(words)):
            return TextHits(np.zeros(0, dtype=np.int64), 0, True)
        mask: np.ndarray | None = None
        for w in sorted(set(words), key=lambda w: counts[w]):  # the rarest first: the intersection shrinks fast
            found = self._union("search_words", "word", [(w, counts[w])])
            mask = found if mask is None else mask & found
            if not mask.any():
                break
        assert mask is not None
        return TextHits(np.flatnonzero(mask), 0, True)

    # --- exact text ---------------------------------------------------------------------------------------------
    def _word_terms(self, cond: Cond) -> list[tuple[str, int]]:
        where, params = cond.sql("v.word")
        rows = self.store.query(f"SELECT v.word, v.trajectories FROM search_vocab v WHERE {where}", params)
        return list(zip(rows["word"].to_pylist(), rows["trajectories"].to_pylist(), strict=True))

    def _pair_terms(self, cond: PairCond) -> list[tuple[str, int]]:
        where, params = cond.sql()
        rows = self.store.query(f"SELECT v.a || v.sep || v.b AS pair, v.trajectories FROM search_pair_vocab v "
                                f"WHERE {where}", params)
        return list(zip(rows["pair"].to_pylist(), rows["trajectories"].to_pylist(), strict=True))

    def exact(self, text: str) -> TextHits:
        """Trajectories whose task or some step field contains `text` (case-insensitive), equal to a plain scan."""
        lowered = self.store.scalar("SELECT lower(?)", [text]) or ""
        plan = needle_plan(lowered)
        mask = self._candidates(plan)
        if plan.exact:
            assert mask is not None
            return TextHits(np.flatnonzero(mask), 0, True)
        if mask is not None and not mask.any():
            return TextHits(np.zeros(0, dtype=np.int64), 0, False)
        if mask is not None and mask.sum() > CHECK_SHARE * self.n:
            mask = None  # a semi-join on most of the corpus is no cheaper than reading it all
        return self.check(text, None if mask is None else np.flatnonzero(mask))

    def _candidates(self, plan: NeedlePlan) -> np.ndarray | None:
        """A mask of the trajectories the postings allow (None: the index cannot narrow the query down)."""
        if plan.word is not None:
            return self._union("search_words", "word", self._word_terms(plan.word))
        if not plan.pairs:
            return None
        found = [self._pair_terms(p) for p in plan.pairs]
        mask: np.ndarray | None = None
        for terms in sorted(found, key=lambda ts: sum(n for _, n in ts)):
            part = self._union("search_pairs", "pair", terms)
            mask = part if mask is None else mask & part
            if not mask.any():
                break
        return mask

    def check(self, text: str, candidates: np.ndarray | None) -> TextHits:
        """The candidates (None: every trajectory) whose Parquet text contains `text`, by the plain scan's ILIKE."""
        pattern = like_pattern(text)
        match, n = step_text_match("s")
        lst = quote_ident(self.list_table)
        table = None if candidates is None else self.table_of(candidates)
        within = "" if table is None else (f" AND {{col}} IN (SELECT c.trajectory_id FROM {lst} c WHERE c.gid IN "
                                           f"(SELECT gid FROM {quote_ident(table)}))")
        sql = (f"SELECT l.gid FROM {lst} l WHERE l.trajectory_id IN ("
               f"SELECT t.trajectory_id FROM trajectories t WHERE t.task ILIKE ? ESCAPE '\\'"
               f"{within.format(col='t.trajectory_id')} UNION "
               f"SELECT s.trajectory_id FROM steps s WHERE {match}{within.format(col='s.trajectory_id')})")
        try:
            gids = self.store.query(sql, [pattern] * (n + 1))["gid"].to_numpy()
        finally:
            if table is not None:
                self.store.drop(table)
        return TextHits(np.sort(gids), self.n if candidates is None else len(candidates), False)
