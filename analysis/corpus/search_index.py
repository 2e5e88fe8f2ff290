"""A word index over step content, so full-text search does not scan every step.

`corpus/index/` is a dataset (corpus/dataset.py) with one table, `words`: one row per (word, trajectory) —
lower-cased words of the task and of the step fields the text filter searches — sorted by word so DuckDB's
row-group statistics skip straight to the words asked for. Its manifest records the corpus state it was built
from (`built_from`, the corpus fingerprint); when the corpus changes (an import that did not rebuild it), the
index is stale and searches fall back to the exact scan until `horizonlens index CORPUS` rebuilds it.

Word search means: every word of the query occurs somewhere in the trajectory (any order), as a
whole word. The exact mode (a literal substring of one field) always scans.
"""

from __future__ import annotations

import re
import time
from typing import Any

from horizonlens.corpus.dataset import Dataset, Snapshot
from horizonlens.corpus.io import corpus_dataset
from horizonlens.corpus.quoting import sql_string
from horizonlens.corpus.scan import FileScans
from horizonlens.corpus.storage import CorpusPath, as_location
from horizonlens.corpus.text import step_text_sql
from horizonlens.errors import CorpusError

INDEX_DIR = "index"
WORD = re.compile(r"[a-z0-9_]+")
SPLIT = "[^a-z0-9_]+"  # the same tokenisation in SQL


def query_words(text: str) -> list[str]:
    """The distinct index words of a query, in order."""
    seen: list[str] = []
    for w in WORD.findall(text.lower()):
        if w not in seen:
            seen.append(w)
    return seen


def _corpus_snapshot(root: CorpusPath) -> Snapshot:
    return corpus_dataset(root).snapshot()


def index_dataset(root: CorpusPath | str) -> Dataset:
    """The word index of a corpus, a dataset of its own (table `words`)."""
    return Dataset(as_location(root) / INDEX_DIR, ("words",))


def index_is_fresh(root: CorpusPath, corpus: Snapshot | None = None) -> bool:
    """The index exists and was built from the corpus as it is now."""
    index = index_dataset(root)
    if not index.exists():
        return False
    try:
        built = index.snapshot()
        corpus = corpus or _corpus_snapshot(root)
    except CorpusError:
        return False
    return built.manifest.get("built_from") == corpus.fingerprint and bool(built.table("words"))


def build_index(root: CorpusPath | str, threads: int | None = None) -> dict[str, Any]:
    """Build (or rebuild) the word index of a corpus from its published files; returns the index manifest."""
    import duckdb

    root = as_location(root).resolve()
    started = time.perf_counter()
    corpus = _corpus_snapshot(root)
    text = step_text_sql("s")
    index = index_dataset(root)
    with index.transaction(create={"kind": "word index", "tokenizer": SPLIT}) as txn:
        target = txn.reserve("words")  # a local file (staged for upload when the corpus is in object storage)
        con = duckdb.connect(":memory:")
        try:
            if threads:
                con.execute(f"SET threads = {int(threads)}")
            con.execute("SET preserve_insertion_order = false")
            scans = FileScans(root)
            steps = scans.relation(con, "steps", corpus.paths("steps"), union=True)
            trajs = scans.relation(con, "trajectories", corpus.paths("trajectories"), union=True)
            con.execute(f"""
              COPY (
                SELECT DISTINCT word, trajectory_id FROM (
                  SELECT unnest(string_split_regex(lower({text}), '{SPLIT}')) AS word, s.trajectory_id
                  FROM {steps} s
                  UNION ALL
                  SELECT unnest(string_split_regex(lower(coalesce(t.task, '')), '{SPLIT}')) AS word, t.trajectory_id
                  FROM {trajs} t)
                WHERE word <> ''
                ORDER BY word, trajectory_id
              ) TO {sql_string(str(target))} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 65536)""")
        finally:
            con.close()
        entry = txn.register("words", target)
        txn.remove(txn.snapshot.table("words"))
        txn.update(built_from=corpus.fingerprint, rows=entry.rows, build_s=round(time.perf_counter() - started, 2),
                   tokenizer=SPLIT)
        built = txn.commit()
    return built.manifest
