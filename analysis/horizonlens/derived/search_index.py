"""The search index: word postings and a compressed text copy, so that neither search mode scans every step.

`index/` is a derived dataset (derived/spec.py), built by `horizonlens index CORPUS` and brought up to date by
every import; docs/corpus-format.md lists its tables. Two search modes:

- **all words**: every word of the query occurs in the trajectory as a whole word; answered by the postings.
- **exact text**: a literal, case-insensitive substring of one field, as `ILIKE '%text%'` over each field
  defines it. A query of word characters only occurs in a field exactly when it occurs inside one of the field's
  words, so the postings of every vocabulary word containing it answer it. Any other query is cut into its word
  runs, each constraining the word it falls in (whole, prefix, suffix or infix); the postings of the most
  selective runs give candidates, whose memory-mapped text copies are then searched (`plan_exact`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from horizonlens.corpus.files import corpus_dataset
from horizonlens.corpus.text import STEP_TEXT_FIELDS, step_text_sql
from horizonlens.derived.spec import DerivedSpec, DerivedTable, UpdateReport, is_fresh, update
from horizonlens.storage.dataset import Dataset, Snapshot
from horizonlens.storage.location import CorpusPath, ObjectPath, as_location

INDEX_DIR = "index"
WORD = re.compile(r"[a-z0-9_]+")
SPLIT = "[^a-z0-9_]+"  # the same tokenisation in SQL
CODEC = "lz4"  # decompresses at several GB/s: checking a candidate's text costs microseconds
SEPARATOR = "\x00"  # between fields and steps in the text copy: a query never matches across it
TEXT_BATCH = 4096

# The words of each trajectory of `{src}`, once per unit: the temp table `unit_words` both word tables read.
_TOKENS = f"""SELECT DISTINCT word, trajectory_id FROM (
  SELECT unnest(string_split_regex(lower({{text}}), '{SPLIT}')) AS word, trajectory_id FROM {{{{src}}}} s)
WHERE word <> ''"""
_WORDS = "SELECT word, trajectory_id FROM unit_words ORDER BY word, trajectory_id"
_VOCAB = "SELECT word, count(*) AS trajectories FROM unit_words GROUP BY word ORDER BY word"


def _write_texts(con: duckdb.DuckDBPyConnection, sql: str, path: Path) -> None:
    """Write (trajectory_id, size, blob) rows as an Arrow IPC file, each text compressed on its own."""
    codec = pa.Codec(CODEC)
    schema = pa.schema([("trajectory_id", pa.string()), ("size", pa.int32()), ("blob", pa.binary())])
    reader = con.sql(sql).to_arrow_reader(TEXT_BATCH)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for batch in reader:
            text = batch.column(1).cast(pa.large_string())
            offsets = np.frombuffer(text.buffers()[1], dtype=np.int64)[text.offset:text.offset + len(text) + 1]
            data = memoryview(text.buffers()[2] or b"")
            sizes = np.diff(offsets)
            blobs = [codec.compress(data[a:b], asbytes=True) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
            writer.write_batch(pa.record_batch([batch.column(0).cast(pa.string()), pa.array(sizes, pa.int32()),
                                                pa.array(blobs, pa.binary())], schema=schema))


def write_step_texts(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """The searchable text of each trajectory's steps, in step order (unit writer of table `texts`)."""
    fields = " || chr(0) || ".join(f"coalesce(lower({f.format(a='s')}), '')" for f in STEP_TEXT_FIELDS)
    _write_texts(con, f"SELECT s.trajectory_id, string_agg({fields}, chr(0) ORDER BY s.step) AS text "
                      f"FROM src s GROUP BY 1 ORDER BY 1", path)


def write_task_texts(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """The lower-cased task of each trajectory (unit writer of table `task_texts`)."""
    _write_texts(con, "SELECT trajectory_id, lower(task) AS text FROM src WHERE task IS NOT NULL ORDER BY 1", path)


SPEC = DerivedSpec(INDEX_DIR, kind="search index", extra={"tokenizer": SPLIT, "codec": CODEC}, prepare={
    "steps": ("unit_words", _TOKENS.format(text=step_text_sql("s"))),
    "trajectories": ("unit_words", _TOKENS.format(text="coalesce(s.task, '')")),
}, tables=(
    DerivedTable("words", source="steps", sql=_WORDS, view="search_words", row_group_size=16_384,
                 doc="(word, trajectory) for the lower-cased words of each trajectory's step fields and task"),
    DerivedTable("vocab", source="steps", sql=_VOCAB, view="search_vocab",
                 doc="each word with the trajectories it occurs in, per part of the index (sum them per word)"),
    DerivedTable("texts", source="steps", writer=write_step_texts, suffix=".arrow",
                 doc="per trajectory: its steps' lower-cased searchable text, LZ4-compressed"),
    DerivedTable("task_words", source="trajectories", sql=_WORDS, view="search_words", row_group_size=16_384,
                 doc="(word, trajectory) for the words of the task"),
    DerivedTable("task_vocab", source="trajectories", sql=_VOCAB, view="search_vocab",
                 doc="task words and their trajectory counts"),
    DerivedTable("task_texts", source="trajectories", writer=write_task_texts, suffix=".arrow",
                 doc="per trajectory: its lower-cased task, LZ4-compressed"),
))
TEXT_TABLES = ("texts", "task_texts")


def query_words(text: str) -> list[str]:
    """The distinct index words of a query, in order."""
    seen: list[str] = []
    for w in WORD.findall(text.lower()):
        if w not in seen:
            seen.append(w)
    return seen


def index_dataset(root: CorpusPath | str) -> Dataset:
    """The search index of a corpus, a dataset of its own."""
    return SPEC.dataset(root)


def index_is_fresh(root: CorpusPath | str, corpus: Snapshot | None = None) -> bool:
    """The index exists, was built from the corpus as it is now, and by the current definitions."""
    return is_fresh(SPEC, corpus or corpus_dataset(root).snapshot())


def build_index(root: CorpusPath | str, full: bool = False, threads: int | None = None,
                log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Build the search index of a corpus, or bring it up to date; returns the index manifest."""
    report: UpdateReport = update(SPEC, corpus_dataset(as_location(root).resolve()), full=full, threads=threads,
                                  log=log)
    return {**report.manifest, "computed": report.computed, "seconds": round(report.seconds, 2)}


# --- exact search -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """A maximal run of word characters in a lower-cased query, and how it must sit in a word of the text."""

    text: str
    starts_word: bool  # a separator precedes it in the query: it begins a word of the text
    ends_word: bool  # a separator follows it in the query: it ends a word of the text

    def vocab_condition(self) -> str:
        """SQL over `v.word` (one parameter: the run): the vocabulary words this run can fall in."""
        if self.starts_word and self.ends_word:
            return "v.word = ?"
        if self.starts_word:
            return "starts_with(v.word, ?)"
        if self.ends_word:
            return "ends_with(v.word, ?)"
        return "contains(v.word, ?)"


def word_runs(lowered: str) -> list[Run]:
    """The word runs of a lower-cased query with the constraint each puts on the word it falls in."""
    return [Run(m.group(), m.start() > 0, m.end() < len(lowered)) for m in WORD.finditer(lowered)]


@dataclass(frozen=True)
class ExactPlan:
    """How the store answers one exact-text query through the index (see `plan_exact`)."""

    needle: str  # the query as `lower()` gives it
    words: list[str] | None = None  # single-run query: the trajectories whose words include one of these
    hits: pa.Table | None = None  # otherwise: the matching trajectories (column trajectory_id), verified
    candidates: int = 0  # trajectories whose text was searched


@dataclass(frozen=True)
class _Chunk:
    ids: pa.Array
    sizes: np.ndarray
    offsets: np.ndarray
    data: memoryview


class TextIndex:
    """The index's text copies, memory-mapped: a trajectory's text is decompressed only when it is a candidate."""

    def __init__(self, paths: Sequence[CorpusPath]):
        self.chunks: list[_Chunk] = []
        for path in paths:
            if isinstance(path, ObjectPath):  # object storage cannot be mapped: the copy is read into memory
                with path.open("rb") as fh:
                    table = pa.ipc.open_file(pa.BufferReader(fh.read())).read_all()
            else:
                with pa.memory_map(str(path)) as source:
                    table = pa.ipc.open_file(source).read_all()  # zero-copy views of the mapped file
            for ids, sizes, blobs in zip(table.column(0).chunks, table.column(1).chunks, table.column(2).chunks,
                                         strict=True):
                offsets = np.frombuffer(blobs.buffers()[1], dtype=np.int32)[blobs.offset:blobs.offset + len(blobs) + 1]
                self.chunks.append(_Chunk(ids, sizes.to_numpy(), offsets, memoryview(blobs.buffers()[2] or b"")))
        self.ids = pa.chunked_array([c.ids for c in self.chunks], pa.string())
        self.starts = np.cumsum([0] + [len(c.ids) for c in self.chunks])  # first global row of each chunk

    def search(self, needle: bytes, candidates: pa.Array | None) -> pa.Array:
        """Trajectory ids (distinct, sorted) whose text contains `needle`, among `candidates` (None: all)."""
        codec = pa.Codec(CODEC)
        selected: np.ndarray | None = None
        if candidates is not None:
            mask = pc.is_in(self.ids, value_set=candidates)
            selected = np.flatnonzero(mask.combine_chunks().to_numpy(zero_copy_only=False)) if len(self.ids) \
                else np.zeros(0, dtype=np.int64)
        hits: set[str] = set()
        for n, chunk in enumerate(self.chunks):
            if selected is None:
                rows: Sequence[int] = range(len(chunk.ids))
            else:
                lo, hi = np.searchsorted(selected, [self.starts[n], self.starts[n + 1]])
                rows = (selected[lo:hi] - self.starts[n]).tolist()
            offsets, data, sizes = chunk.offsets, chunk.data, chunk.sizes
            for i in rows:
                text = codec.decompress(data[offsets[i]:offsets[i + 1]], decompressed_size=int(sizes[i]), asbytes=True)
                if needle in text:
                    hits.add(chunk.ids[i].as_py())
        return pa.array(sorted(hits), pa.string())


def plan_exact(query: Callable[[str, list[Any]], pa.Table], texts: TextIndex, text: str,
               total: int, scan_share: float = 0.5) -> ExactPlan | None:
    """Plan an exact-text search through the index; None when it cannot help (the caller scans).

    `query` runs SQL over the store's views (`search_vocab`, `search_words`); `total` is the number of
    trajectories, to judge when candidates are so many that searching every text is as cheap.
    """
    lowered = query("SELECT lower(?) AS v", [text]).column(0)[0].as_py()
    if not lowered or SEPARATOR in lowered:
        return None
    runs = word_runs(lowered)
    if len(runs) == 1 and runs[0].text == lowered:
        words = query("SELECT DISTINCT v.word FROM search_vocab v WHERE contains(v.word, ?)",
                      [lowered]).column(0).to_pylist()
        return ExactPlan(lowered, words=words)
    candidates = _candidates(query, runs, total * scan_share) if runs else None
    hits = texts.search(lowered.encode("utf-8"), candidates)
    return ExactPlan(lowered, hits=pa.table({"trajectory_id": hits}),
                     candidates=total if candidates is None else len(candidates))


def _candidates(query: Callable[[str, list[Any]], pa.Table], runs: list[Run], limit: float) -> pa.Array | None:
    """Trajectories that contain a word fitting each of the (at most three) most selective runs; None if too many."""
    estimates = []
    for run in {r.vocab_condition() + "|" + r.text: r for r in runs}.values():
        n = query(f"SELECT coalesce(sum(v.trajectories), 0) FROM search_vocab v WHERE {run.vocab_condition()}",
                  [run.text]).column(0)[0].as_py()
        estimates.append((int(n), run))
    estimates.sort(key=lambda e: e[0])
    if estimates[0][0] > limit:
        return None  # even the rarest run is everywhere: searching every text is no slower
    chosen = [run for n, run in estimates[:3] if n <= limit]
    parts = [f"SELECT w.trajectory_id FROM search_words w WHERE w.word IN "
             f"(SELECT v.word FROM search_vocab v WHERE {run.vocab_condition()})" for run in chosen]
    return query(" INTERSECT ".join(parts), [run.text for run in chosen]).column(0).combine_chunks()
