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
from typing import Any

import numpy as np
import pyarrow as pa

from horizonlens.corpus.text import like_pattern, step_text_match
from horizonlens.derived.search_index import Cond, NeedlePlan, PairCond, needle_plan
from horizonlens.query.base import Store
from horizonlens.storage.quoting import quote_ident

# A condition matching many terms is looked up in batches, the most frequent terms first and each batch four times
# the last (up to TERMS_PER_LOOKUP named inline), so that a query matching almost everything stops as soon as
# every trajectory is found, after reading a few common terms.
FIRST_LOOKUP, TERMS_PER_LOOKUP = 8, 2_000
CHECK_SHARE = 0.5  # when more candidates than this share of the corpus are left, the check reads every text


@dataclass(frozen=True)
class TextHits:
    """The trajectories a text query matches, as gids of the list (sorted), and how they were found."""

    gids: np.ndarray
    checked: int  # trajectories whose Parquet text was read to confirm them (0: the postings alone answered)
    exact_plan: bool  # the query was one the postings answer alone


class TextSearch:
    """The search index of one corpus state, over the in-memory trajectory list `list_table` (gid, trajectory_id).

    `table_of(gids)` puts gids and their trajectory ids into a new table of the store's database; its name.
    """

    def __init__(self, store: Store, list_table: str, table_of: Callable[[np.ndarray], str], name: str):
        self.store = store
        self.list_table = list_table
        self.table_of = table_of
        # the vocabularies in memory: every exact-text query filters them with string functions
        self.vocab, self.pair_vocab = f"{name}_vocab", f"{name}_pair_vocab"
        store.materialize(self.vocab, "SELECT word, trajectories FROM search_vocab ORDER BY word",
                          "cannot read the search index's vocabulary")
        store.materialize(self.pair_vocab, "SELECT a, sep, b, trajectories FROM search_pair_vocab ORDER BY sep, b",
                          "cannot read the search index's pair vocabulary")
        # every trajectory id of the list by gid: hits become (gid, trajectory_id) tables without a join
        self.ids = store.query(f"SELECT trajectory_id FROM {quote_ident(list_table)} ORDER BY gid"
                               ).column(0).combine_chunks()
        self.n = len(self.ids)
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

    def close(self) -> None:
        """Drop the in-memory vocabularies."""
        self.store.drop(self.vocab)
        self.store.drop(self.pair_vocab)

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

    def _union(self, terms: list[tuple[Any, int]]) -> np.ndarray:
        """Trajectories (a mask over the list) holding any of `terms`, read from the postings most frequent first.

        A term is a word or a pair (a, sep, b), with the number of trajectories it occurs in.
        """
        mask = np.zeros(self.n, dtype=bool)
        ordered = [t for t, _ in sorted(terms, key=lambda t: -t[1])]
        start, size = 0, FIRST_LOOKUP
        while start < len(ordered):
            batch = ordered[start:start + size]
            start, size = start + len(batch), min(size * 4, TERMS_PER_LOOKUP)
            marks = ", ".join("?" for _ in batch)
            if isinstance(batch[0], str):
                sql, params = f"SELECT unit, unnest(docs) AS doc FROM search_words WHERE word IN ({marks})", batch
            else:  # the condition on `a` alone lets row groups be skipped by their statistics
                firsts = sorted({a for a, _, _ in batch})
                sql = (f"SELECT unit, unnest(docs) AS doc FROM search_pairs WHERE a IN "
                       f"({', '.join('?' for _ in firsts)}) AND a || sep || b IN ({marks})")
                params = [*firsts, *("".join(t) for t in batch)]
            mask[self._gids(self.store.query(sql, params))] = True
            if mask.all():
                break
        return mask

    def words(self, words: list[str]) -> TextHits:
        """Trajectories containing every one of `words` (lower-cased index words) as a whole word."""
        if not words:
            return TextHits(np.arange(self.n), 0, True)
        rows = self.store.query(f"SELECT word, trajectories FROM {self.vocab} WHERE word IN "
                                f"({', '.join('?' for _ in words)})", list(words))
        counts = dict(zip(rows["word"].to_pylist(), rows["trajectories"].to_pylist(), strict=True))
        if len(counts) < len(set(words)):
            return TextHits(np.zeros(0, dtype=np.int64), 0, True)
        mask: np.ndarray | None = None
        for w in sorted(set(words), key=lambda w: counts[w]):  # the rarest first: the intersection shrinks fast
            found = self._union([(w, counts[w])])
            mask = found if mask is None else mask & found
            if not mask.any():
                break
        assert mask is not None
        return TextHits(np.flatnonzero(mask), 0, True)

    # --- exact text ---------------------------------------------------------------------------------------------
    def _word_terms(self, cond: Cond) -> list[tuple[Any, int]]:
        where, params = cond.sql("v.word")
        rows = self.store.query(f"SELECT v.word, v.trajectories FROM {self.vocab} v WHERE {where}", params)
        return list(zip(rows["word"].to_pylist(), rows["trajectories"].to_pylist(), strict=True))

    def _pair_terms(self, cond: PairCond) -> list[tuple[Any, int]]:
        where, params = cond.sql()
        rows = self.store.query(f"SELECT v.a, v.sep, v.b, v.trajectories FROM {self.pair_vocab} v WHERE {where}",
                                params).to_pylist()
        return [((r["a"], r["sep"], r["b"]), r["trajectories"]) for r in rows]

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
            return self._union(self._word_terms(plan.word))
        if not plan.pairs:
            return None
        found = [self._pair_terms(p) for p in plan.pairs]
        mask: np.ndarray | None = None
        for terms in sorted(found, key=lambda ts: sum(n for _, n in ts)):
            part = self._union(terms)
            mask = part if mask is None else mask & part
            if not mask.any():
                break
        return mask

    def check(self, text: str, candidates: np.ndarray | None) -> TextHits:
        """The candidates (None: every trajectory) whose Parquet text contains `text`, by the plain scan's ILIKE."""
        pattern = like_pattern(text)
        match, n = step_text_match("s")
        table = None if candidates is None else self.table_of(candidates)
        scope = quote_ident(self.list_table if table is None else table)  # (gid, trajectory_id) of who may match
        within = "" if table is None else f" AND {{col}} IN (SELECT trajectory_id FROM {scope})"
        sql = (f"SELECT c.gid FROM {scope} c WHERE c.trajectory_id IN (SELECT t.trajectory_id FROM trajectories t "
               f"WHERE t.task ILIKE ? ESCAPE '\\'{within.format(col='t.trajectory_id')} UNION ALL "
               f"SELECT s.trajectory_id FROM steps s WHERE {match}{within.format(col='s.trajectory_id')})")
        try:
            gids = self.store.query(sql, [pattern] * (n + 1))["gid"].to_numpy()
        finally:
            if table is not None:
                self.store.drop(table)
        return TextHits(np.sort(gids), self.n if candidates is None else len(candidates), False)
