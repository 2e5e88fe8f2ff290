"""The search index: word and word-pair postings over the corpus text, with no copy of the text itself.

`index/` is a derived dataset (derived/spec.py), built by `horizonlens index CORPUS` and brought up to date by
every import; docs/corpus-format.md lists its tables. Each unit of step (or trajectory) files numbers its
trajectories 0, 1, ... (`docs`) and lists, sorted, which of them contain each lower-cased word (`words`) and each
*pair*: two neighbouring words of one field with the exact separator between them (`pairs`). A field's first and
last words also pair with the field's edge (`START`, `END`) when punctuation or spaces stand between them.

Two search modes:

- **all words**: every word of the query occurs in the trajectory as a whole word: the word postings.
- **exact text**: a literal, case-insensitive substring of one field, as `ILIKE '%text%'` over each field defines
  it. The lower-cased query is cut into word runs and the separators between them (`needle_plan`). A query that
  is one run answers from the postings of every vocabulary word containing it; one that needs a single pair (two
  runs, or one run with a separator on one side) from the postings of every vocabulary pair fitting it. Both are
  exact: no text is read. Any other query intersects the postings of its pairs and the trajectories found are
  checked against the corpus's own Parquet text (query/search.py); a query with no word character reads it all.

Separators longer than SEP_KEEP characters are kept as their first and last SEP_KEEP characters, so text with
long runs of non-ASCII letters (which are separators here) does not copy itself into the index; a query whose
separators are that long is checked against the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from horizonlens.corpus.files import corpus_dataset
from horizonlens.corpus.text import STEP_TEXT_FIELDS
from horizonlens.derived.spec import DerivedSpec, DerivedTable, Rollup, UpdateReport, is_fresh, update
from horizonlens.errors import CorpusError
from horizonlens.storage.dataset import Dataset, Snapshot
from horizonlens.storage.location import CorpusPath, as_location
from horizonlens.storage.manifest import read_json

INDEX_DIR = "index"
WORD = re.compile(r"[a-z0-9_]+")
WORD_SQL = "[a-z0-9_]+"  # the same words in SQL
SEP_KEEP = 16  # characters kept from each end of a longer separator
START, END, ELIDED = "\x02", "\x03", "\x01"  # a field's edges in a pair; the cut in a long separator
RETIRED_TABLES = ("texts", "task_texts")  # the text copy an older format kept beside the postings


def stored_sep_sql(expr: str) -> str:
    """SQL for a separator as the index keeps it: whole up to SEP_KEEP characters, else both ends around ELIDED."""
    return (f"CASE WHEN length({expr}) <= {SEP_KEEP} THEN {expr} ELSE left({expr}, {SEP_KEEP}) || chr(1) || "
            f"right({expr}, {SEP_KEEP}) END")


def _pairs_sql(words: str, seps: str) -> str:
    """SQL: the pairs of one field from its words and the separators around them (n words, n + 1 separators)."""
    return (f"list_filter(list_transform(range(0, len({words}) + 1), lambda i: struct_pack("
            f"a := CASE WHEN i = 0 THEN chr(2) ELSE {words}[i] END, sep := {stored_sep_sql(f'{seps}[i + 1]')}, "
            f"b := CASE WHEN i = len({words}) THEN chr(3) ELSE {words}[i + 1] END)), "
            f"lambda p: p.sep <> '' AND NOT (p.a = chr(2) AND p.b = chr(3)))")


def _prepare(fields: list[str]) -> tuple[tuple[str, str], ...]:
    """The temp tables of one unit, in order, from its trajectories to each word's and pair's sorted docs.

    Each distinct lower-cased field text is kept once with the trajectories that have it, and tokenised once:
    identical texts (system prompts, tool schemas, repeated observations) cost one pass, and long strings are
    hashed once.
    """
    texts = " UNION ALL ".join(f"SELECT d.doc, lower({f}) AS x FROM {{src}} s JOIN unit_docs d USING (trajectory_id)"
                               for f in fields)
    return (
        ("unit_docs", "SELECT trajectory_id, CAST(row_number() OVER (ORDER BY trajectory_id) - 1 AS INTEGER) AS doc "
                      "FROM (SELECT DISTINCT trajectory_id FROM {src})"),
        ("unit_texts", f"SELECT x, list(DISTINCT doc) AS docs FROM ({texts}) WHERE x <> '' GROUP BY x"),
        ("unit_tokens", f"SELECT docs, list_distinct(w) AS w, list_distinct({_pairs_sql('w', 's')}) AS p FROM ("
                        f"SELECT docs, regexp_extract_all(x, '{WORD_SQL}') AS w, "
                        f"regexp_split_to_array(x, '{WORD_SQL}') AS s FROM unit_texts)"),
        ("unit_words", "SELECT word, list(DISTINCT doc ORDER BY doc) AS docs FROM (SELECT word, unnest(docs) AS doc "
                       "FROM (SELECT unnest(w) AS word, docs FROM unit_tokens)) GROUP BY word"),
        ("unit_pairs", "SELECT a, sep, b, list(DISTINCT doc ORDER BY doc) AS docs FROM (SELECT a, sep, b, "
                       "unnest(docs) AS doc FROM (SELECT unnest(p, recursive := true), docs FROM unit_tokens)) "
                       "GROUP BY a, sep, b"),
    )


_UNIT = "CAST(getvariable('derived_unit') AS BIGINT) AS unit"
_DOCS = f"SELECT {_UNIT}, doc, trajectory_id FROM unit_docs ORDER BY doc"
_WORDS = f"SELECT word, {_UNIT}, len(docs) AS n, docs FROM unit_words ORDER BY word"
_PAIRS = f"SELECT a, sep, b, {_UNIT}, len(docs) AS n, docs FROM unit_pairs ORDER BY a, sep, b"
# A row group of the postings holds at most this many terms and doc numbers: a lookup decodes one group of each
# file the term may be in, so a rare term is never read beside a very common one.
POSTINGS_ROWS, POSTINGS_DOCS = 4_096, 262_144


def _tables(prefix: str, source: str) -> tuple[DerivedTable, ...]:
    what = "each trajectory's step fields and task"
    # delta-coded integers: a sorted run of document numbers costs bits, not bytes
    v2 = "PARQUET_VERSION V2, COMPRESSION_LEVEL 9"
    return (
        DerivedTable(f"{prefix}docs", source=source, sql=_DOCS, view="search_docs", options=v2,
                     doc="the trajectories of each unit of the index, numbered: (unit, doc) -> trajectory_id"),
        DerivedTable(f"{prefix}words", source=source, sql=_WORDS, view="search_words", options=v2,
                     row_group_size=POSTINGS_ROWS, list_budget=POSTINGS_DOCS,
                     doc=f"per (word, unit): the docs (sorted) whose {what} have the lower-cased word, and how many"),
        DerivedTable(f"{prefix}pairs", source=source, sql=_PAIRS, view="search_pairs", options=v2,
                     row_group_size=POSTINGS_ROWS, list_budget=POSTINGS_DOCS,
                     doc=f"per (pair a, sep, b, unit): the docs (sorted) whose {what} have the two neighbouring words "
                         f"with that separator in one field, and their number"),
    )


SPEC = DerivedSpec(
    INDEX_DIR, kind="search index", retired=RETIRED_TABLES,
    extra={"words": WORD_SQL, "sep_keep": SEP_KEEP},
    prepare={"steps": _prepare([f.format(a="s") for f in STEP_TEXT_FIELDS]), "trajectories": _prepare(["s.task"])},
    tables=(*_tables("", "steps"), *_tables("task_", "trajectories")),
    rollups=(
        Rollup("vocab", "SELECT word, CAST(sum(n) AS BIGINT) AS trajectories FROM search_words GROUP BY word "
                        "ORDER BY word", view="search_vocab",
               doc="each word of the index with the trajectories it occurs in"),
        Rollup("pair_vocab", "SELECT a, sep, b, CAST(sum(n) AS BIGINT) AS trajectories FROM search_pairs "
                             "GROUP BY a, sep, b ORDER BY sep, b, a",
               view="search_pair_vocab", doc="each pair of the index (a, sep, b) with the trajectories it occurs in; "
                                             "a is START (chr 2) and b END (chr 3) at a field's edges"),
    ))


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
    """Build the search index of a corpus, or bring it up to date; returns the index manifest.

    An index this version cannot read (an older format, say one with a text copy) is built again from nothing
    and the files it listed are removed; `replaced` then says what was there.
    """
    root = as_location(root).resolve()
    dataset = index_dataset(root)
    old, retired = _unreadable_files(dataset)
    report: UpdateReport = update(SPEC, corpus_dataset(root), full=full, threads=threads, log=log)
    replaced = None
    if old:
        listed = {f.path for f in dataset.snapshot().files}
        gone = [p for p in old if p not in listed]
        for path in gone:
            (dataset.root / path).unlink(missing_ok=True)
        what = f"with a text copy ({', '.join(retired)})" if retired else "in another format"
        replaced = f"an older search index {what}: {len(gone)} file(s) removed"
        log(f"  replaced {replaced}")
    return {**report.manifest, "computed": report.computed, "seconds": round(report.seconds, 2),
            "replaced": replaced}


def _unreadable_files(dataset: Dataset) -> tuple[list[str], list[str]]:
    """The files an index this version cannot read lists, and the retired tables among its tables.

    ([], []) for a readable index or none; a manifest that is not JSON lists nothing to remove.
    """
    try:
        dataset.snapshot(missing_ok=True)
        return [], []
    except CorpusError:
        pass
    try:
        raw = read_json(dataset.manifest_path)
    except CorpusError:
        return [], []
    files = [f for f in (raw.get("files") if isinstance(raw, dict) else None) or [] if isinstance(f, dict)]
    paths = [f["path"] for f in files if isinstance(f.get("path"), str) and ".." not in f["path"].split("/")]
    return paths, sorted({str(f.get("table")) for f in files} & set(RETIRED_TABLES))


# --- exact search: what a query asks of the index -----------------------------------------------------------

@dataclass(frozen=True)
class Cond:
    """A condition on one string column of the vocabulary: equal, prefix, suffix, contains, or any (no condition)."""

    kind: str
    text: str = ""

    def sql(self, column: str) -> tuple[str, list[str]]:
        """SQL over `column` and its parameters."""
        if self.kind == "any":
            return "true", []
        fn = {"equal": "{c} = ?", "prefix": "starts_with({c}, ?)", "suffix": "ends_with({c}, ?)",
              "contains": "contains({c}, ?)"}[self.kind]
        return fn.format(c=column), [self.text]


@dataclass(frozen=True)
class PairCond:
    """Conditions on one pair of the text: its left word (or START), the separator, its right word (or END)."""

    a: Cond
    sep: Cond
    b: Cond

    def sql(self) -> tuple[str, list[str]]:
        """SQL over the pair vocabulary `v` (a, sep, b) and its parameters."""
        parts = [c.sql(f"v.{col}") for col, c in (("a", self.a), ("sep", self.sep), ("b", self.b))]
        return " AND ".join(p for p, _ in parts), [x for _, ps in parts for x in ps]


@dataclass(frozen=True)
class NeedlePlan:
    """What an exact-text query asks of the index (see `needle_plan`)."""

    needle: str  # the query as `lower()` gives it
    word: Cond | None = None  # one run and nothing else: the vocabulary words containing it
    pairs: list[PairCond] = field(default_factory=list)  # every one must occur in the trajectory
    exact: bool = False  # the postings alone answer the query; else what they find is checked against the text

    @property
    def reads_everything(self) -> bool:
        """No word character: the index cannot narrow it down, every text is checked."""
        return self.word is None and not self.pairs


def _sep(kind: str, text: str) -> tuple[Cond, bool]:
    """A condition on a stored separator that the needle's separator `text` must meet; whether it is exact."""
    if len(text) <= SEP_KEEP:
        return Cond(kind, text), True
    if kind == "equal":
        return Cond("equal", text[:SEP_KEEP] + ELIDED + text[-SEP_KEEP:]), False
    return (Cond("prefix", text[:SEP_KEEP]), False) if kind == "prefix" else (Cond("suffix", text[-SEP_KEEP:]), False)


def needle_plan(lowered: str) -> NeedlePlan:
    """How the index answers an exact-text query, given the query lower-cased as DuckDB's `lower()` does it.

    The query is t0 r1 t1 ... rm tm: word runs r and separators t (t0 and tm may be empty). A run bounded on a
    side (by a separator, or by another run across one) must sit at that edge of a text word; a run bounded on
    neither side may sit anywhere inside a word.
    """
    runs = [(m.group(), m.start(), m.end()) for m in WORD.finditer(lowered)]
    if not runs:
        return NeedlePlan(lowered)
    inner = [lowered[a[2]:b[1]] for a, b in zip(runs, runs[1:], strict=False)]
    seps = [lowered[:runs[0][1]], *inner, lowered[runs[-1][2]:]]
    m = len(runs)
    if m == 1 and not seps[0] and not seps[1]:
        return NeedlePlan(lowered, word=Cond("contains", runs[0][0]), exact=True)

    def word(i: int) -> Cond:
        left, right = i > 0 or bool(seps[0]), i < m - 1 or bool(seps[m])
        return Cond("equal" if left and right else "suffix" if right else "prefix", runs[i][0])

    pairs: list[PairCond] = []
    precise = True
    if seps[0]:
        sep, ok = _sep("suffix", seps[0])
        pairs.append(PairCond(Cond("any"), sep, word(0)))
        precise &= ok
    for i in range(m - 1):
        sep, ok = _sep("equal", seps[i + 1])
        pairs.append(PairCond(word(i), sep, word(i + 1)))
        precise &= ok
    if seps[m]:
        sep, ok = _sep("prefix", seps[m])
        pairs.append(PairCond(word(m - 1), sep, Cond("any")))
        precise &= ok
    return NeedlePlan(lowered, pairs=pairs, exact=precise and len(pairs) == 1)
