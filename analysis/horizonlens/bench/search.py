"""Two designs of the search index side by side: the product's Parquet postings, and tantivy over the same terms.

Both index the same terms (derived/search_index.py: the words, and the word pairs with their exact separator, of
each trajectory's step fields and task), store no copy of the text, and check the candidates of a query they
cannot answer alone against the corpus's own Parquet text, by the same DuckDB query (query/search.py). They
differ in where the postings live and who intersects them:

- **postings** (the product): Parquet tables in `index/`, read by DuckDB; unions and intersections in numpy over
  the in-memory trajectory list;
- **tantivy**: one document per trajectory (its gid as a fast field, the terms of its steps and task in two raw
  fields, no positions, nothing stored), built here under the bench's data folder; tantivy intersects, and its
  regex queries over the term dictionary stand for the vocabulary lookups.

Every query is answered by both and the answers must be equal before anything is timed. Each timing resolves the
query afresh (nothing cached between calls): the first search of a text, which is what a user waits for.
"""

from __future__ import annotations

import json
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np

from horizonlens.bench.timing import interleaved
from horizonlens.derived.search_index import SPEC, WORD, Cond, PairCond, needle_plan, query_words
from horizonlens.query.search import TextHits, TextSearch
from horizonlens.query.store import CorpusStore
from horizonlens.storage.quoting import sql_string

# Exact-text needles of every shape the planner knows: one run (contains), a pair (two runs, or one run and a
# separator), longer phrases (checked against the text); and all-words queries from rare to very common.
EXACT_NEEDLES = ["insufficient balance", "balance", "error:", " bal", "ance bal", "failed test_", "wrapping up", "e",
                 "error: insufficient balance", "retrying the step with", "open doc-0007 and"]
WORDS_QUERIES = ["insufficient balance", "balance", "error", "wrapping up", "the", "doc 0012", "kinetic energy"]
STEP_FILES_PER_BATCH = 8  # steps files tokenised together while building the tantivy index


def folder_bytes(path: Path) -> int:
    """Bytes of every file under a folder (the tantivy index: its own note of how it was built aside)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != "built.json") \
        if path.exists() else 0


def _escape(text: str) -> str:
    """A literal for tantivy's regex syntax: every character outside [a-z0-9_] as a hex escape."""
    return "".join(c if WORD.fullmatch(c) else f"\\x{{{ord(c):x}}}" for c in text)


def _regex(cond: Cond, any_edge: str) -> str:
    """A regex over one part of a term (a word, or a separator when `any_edge` is '') meeting `cond`."""
    cls = "[a-z0-9_]" if any_edge else "[^a-z0-9_]"
    lit = _escape(cond.text)
    if cond.kind == "any":
        return f"({_escape(any_edge)}|{cls}+)"
    return {"equal": lit, "prefix": f"{lit}{cls}*", "suffix": f"{cls}*{lit}",
            "contains": f"{cls}*{lit}{cls}*"}[cond.kind]


def pair_regex(pair: PairCond) -> str:
    """The regex over pair terms (a + sep + b) that a pair condition stands for."""
    return _regex(pair.a, "\x02") + _regex(pair.sep, "") + _regex(pair.b, "\x03")


class TantivySearch:
    """The tantivy design over one corpus (see the module docstring); answers like `TextSearch`."""

    def __init__(self, path: Path, product: TextSearch):
        import tantivy

        self.tantivy = tantivy
        self.index = tantivy.Index.open(str(path))
        self.schema = self.index.schema
        self.searcher = self.index.searcher()
        self.product = product  # for the check against the Parquet text, shared by both designs

    def _gids(self, query: Any) -> np.ndarray:
        n = self.searcher.num_docs
        hits = self.searcher.search(query, limit=max(n, 1), order_by_field="gid", count=False).hits
        return np.sort(np.fromiter((k for k, _ in hits), dtype=np.int64, count=len(hits)))

    def words(self, words: list[str]) -> TextHits:
        """Trajectories containing every word: a boolean query of term queries, intersected by tantivy."""
        q = self.tantivy.Query
        query = q.boolean_query([(self.tantivy.Occur.Must, q.term_query(self.schema, "w", w)) for w in words])
        return TextHits(self._gids(query), 0, True)

    def exact(self, text: str) -> TextHits:
        """Trajectories containing the text, equal to a plain scan (the same plan as the product's)."""
        q = self.tantivy.Query
        plan = needle_plan(self.product.store.scalar("SELECT lower(?)", [text]) or "")
        if plan.reads_everything:
            return self.product.check(text, None)
        if plan.word is not None:
            query = q.regex_query(self.schema, "w", _regex(plan.word, "w"))
        else:
            query = q.boolean_query([(self.tantivy.Occur.Must, q.regex_query(self.schema, "p", pair_regex(p)))
                                     for p in plan.pairs])
        gids = self._gids(query)
        if plan.exact or not len(gids):
            return TextHits(gids, 0, plan.exact)
        return self.product.check(text, gids)


def build_tantivy(store: CorpusStore, path: Path, log: Callable[[str], None] = lambda s: None) -> float:
    """Build the tantivy index of a corpus at `path` (replacing any); the seconds it took.

    The terms are made by the product's own tokenising SQL (SPEC.prepare), batch by batch of step files, so the
    two designs index exactly the same terms; each trajectory's gid is its rank by id, as in the store's list.
    """
    import duckdb
    import tantivy

    started = time.perf_counter()
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    sb = tantivy.SchemaBuilder()
    sb.add_unsigned_field("gid", stored=False, indexed=False, fast=True)
    sb.add_text_field("w", stored=False, tokenizer_name="raw", index_option="basic")
    sb.add_text_field("p", stored=False, tokenizer_name="raw", index_option="basic")
    index = tantivy.Index(sb.build(), path=str(path))
    writer = index.writer(heap_size=512_000_000, num_threads=1)
    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    snap = store.snapshot
    ids = [str(store.root / f.path) for f in snap.table("trajectories")]
    con.execute(f"CREATE TEMP TABLE gids AS SELECT trajectory_id, CAST(row_number() OVER (ORDER BY trajectory_id) "
                f"- 1 AS BIGINT) AS gid FROM read_parquet([{', '.join(sql_string(p) for p in ids)}], "
                f"hive_partitioning = false, union_by_name = true)")
    task = _terms(con, SPEC, "trajectories", ids, "task_terms")
    steps = [str(store.root / f.path) for f in snap.table("steps")]
    for start in range(0, len(steps), STEP_FILES_PER_BATCH):
        batch = steps[start:start + STEP_FILES_PER_BATCH]
        _terms(con, SPEC, "steps", batch, "step_terms")
        rows = con.sql(
            "SELECT g.gid, list_distinct(list_concat(s.w, coalesce(t.w, []))) AS w, "
            "list_distinct(list_concat(s.p, coalesce(t.p, []))) AS p FROM step_terms s JOIN gids g USING "
            "(trajectory_id) LEFT JOIN task_terms t USING (trajectory_id)").to_arrow_table()
        con.execute("DELETE FROM task_terms WHERE trajectory_id IN (SELECT trajectory_id FROM step_terms)")
        _add(writer, tantivy, index.schema, rows)
        log(f"    tantivy: {min(start + STEP_FILES_PER_BATCH, len(steps))} / {len(steps)} step files")
    _add(writer, tantivy, index.schema, con.sql("SELECT g.gid, t.w, t.p FROM task_terms t JOIN gids g "
                                                "USING (trajectory_id)").to_arrow_table())  # trajectories without steps
    writer.commit()
    writer.wait_merging_threads()
    con.close()
    del task
    return time.perf_counter() - started


def _terms(con: Any, spec: Any, source: str, files: list[str], name: str) -> str:
    """Per trajectory of these files: its words (w) and pair terms (p), by the index's own tokenising SQL."""
    paths = ", ".join(sql_string(f) for f in files)
    con.execute(f"CREATE OR REPLACE TEMP VIEW src AS SELECT * FROM read_parquet([{paths}], hive_partitioning = false, "
                f"union_by_name = true)")
    for statement in spec.prepare_sql(source):
        con.execute(statement)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT d.trajectory_id, w.w, p.p FROM unit_docs d "
                f"LEFT JOIN (SELECT doc, list(word) AS w FROM (SELECT word, unnest(docs) AS doc FROM unit_words) "
                f"GROUP BY doc) w USING (doc) LEFT JOIN (SELECT doc, list(a || sep || b) AS p FROM (SELECT a, sep, b, "
                f"unnest(docs) AS doc FROM unit_pairs) GROUP BY doc) p USING (doc)")
    return name


def _add(writer: Any, tantivy: Any, schema: Any, rows: Any) -> None:
    for gid, w, p in zip(rows["gid"].to_pylist(), rows["w"].to_pylist(), rows["p"].to_pylist(), strict=True):
        doc = tantivy.Document()
        doc.add_unsigned("gid", int(gid))
        fields = {k: v for k, v in (("w", w), ("p", p)) if v}
        if fields:
            doc.extend(fields, schema)
        writer.add_document(doc)


def bench_search(store: CorpusStore, data: Path, repeats: int = 5, log: Callable[[str], None] = print,
                 tantivy: bool = True) -> dict[str, Any]:
    """Sizes, build times and query latencies (p50/p95 over the queries) of both designs, same run.

    `tantivy`: False measures the product's postings alone (building tantivy at 10^6 takes hours here).
    """
    root = store.root
    assert isinstance(root, Path), "the search benchmark runs on a local corpus"
    n = int(store.scalar("SELECT count(*) FROM trajectories") or 0)
    parquet = folder_bytes(root / "trajectories") + folder_bytes(root / "steps")
    started = time.perf_counter()
    product = store.lists.text_search()
    assert product is not None, "build the search index first"
    open_s = time.perf_counter() - started
    manifest = store.index_mount.snapshot.manifest if store.index_mount.snapshot is not None else {}  # build_s
    designs: dict[str, Any] = {"postings": product}
    sizes, builds, opens = {}, {"postings": manifest.get("build_s")}, {"postings": round(open_s, 3)}
    tv_path = data / f"tantivy-{n}"
    if tantivy:
        stamp = tv_path / "built.json"  # a tantivy index of this corpus state is reused, with its build time
        state = store.snapshot.fingerprint
        built = json.loads(stamp.read_text()) if stamp.exists() else {}
        if built.get("corpus") == state:
            builds["tantivy"] = float(built["build_s"])
        else:
            log("  tantivy index")
            builds["tantivy"] = round(build_tantivy(store, tv_path, log), 2)
            stamp.write_text(json.dumps({"corpus": state, "build_s": builds["tantivy"]}))
        started = time.perf_counter()
        designs["tantivy"] = TantivySearch(tv_path, product)
        opens["tantivy"] = round(time.perf_counter() - started, 3)
        sizes["tantivy"] = folder_bytes(tv_path)
    out: dict[str, Any] = {"trajectories": n, "parquet_bytes": parquet, "designs": {}}
    answers: dict[str, dict[str, int]] = {}
    for mode, queries in (("exact", EXACT_NEEDLES), ("words", WORDS_QUERIES)):
        for text in queries:
            got = {}
            for name, d in designs.items():
                hits = d.exact(text) if mode == "exact" else d.words(query_words(text))
                got[name] = hits
            counts = {name: len(h.gids) for name, h in got.items()}
            if len({h.gids.tobytes() for h in got.values()}) != 1:
                raise AssertionError(f"{mode} {text!r}: the designs disagree: {counts}")
            answers[f"{mode}:{text}"] = {"hits": counts["postings"], "checked": got["postings"].checked}
    out["answers"] = answers
    index = store.index_mount.snapshot
    assert index is not None
    sizes["postings"] = sum(f.bytes for f in index.files)
    for name, d in designs.items():
        lat: dict[str, Any] = {}
        for mode, queries in (("exact", EXACT_NEEDLES), ("words", WORDS_QUERIES)):
            calls: dict[str, Callable[[], Any]] = {
                q: partial(d.exact, q) if mode == "exact" else partial(d.words, query_words(q)) for q in queries}
            timed = interleaved(calls, repeats=repeats)
            runs = np.array([timed[q]["median_s"] for q in queries]) * 1000
            lat[mode] = {"p50_ms": round(float(np.percentile(runs, 50)), 2),
                         "p95_ms": round(float(np.percentile(runs, 95)), 2),
                         "per_query_ms": {q: round(timed[q]["median_s"] * 1000, 2) for q in queries}}
        out["designs"][name] = {"bytes": sizes[name], "ratio_to_parquet": round(sizes[name] / parquet, 3),
                                "build_s": builds[name], "open_s": opens[name], **lat}
    return out


def report_lines(results: dict[str, Any]) -> list[str]:
    """The search-index section of RESULTS.md: both designs per corpus size, same run."""
    rows = [(n, c["search_designs"]) for n, c in results.get("corpora", {}).items() if c.get("search_designs")]
    if not rows:
        return []
    lines = ["", "## Search index: Parquet postings (the product) beside tantivy", "",
             "Both index the same words and word pairs and keep no copy of the text; a query they cannot answer "
             "alone is checked against the corpus's Parquet by the same DuckDB query. Latency: each query resolved "
             "afresh (nothing cached), median per query, then p50 and p95 over the queries (bench/search.py lists "
             "them). Build: postings as `horizonlens index` built them; tantivy from the same tokenising SQL.", "",
             "| trajectories | design | bytes | × Parquet | build | exact p50 | exact p95 | words p50 | words p95 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n, s in rows:
        for name, d in s["designs"].items():
            ex, wd = d["exact"], d["words"]
            lines.append(f"| {int(n):,} | {name} | {d['bytes'] / 2**20:,.1f} MB | {d['ratio_to_parquet']:.2f}× | "
                         f"{d['build_s'] or 0:,.0f} s | {ex['p50_ms']:,.1f} ms | {ex['p95_ms']:,.1f} ms "
                         f"| {wd['p50_ms']:,.1f} ms | {wd['p95_ms']:,.1f} ms |")
    return lines


def main(argv: list[str] | None = None) -> None:
    """Both index designs and the Explore runs on existing corpora; writes SEARCH.md and search.json."""
    import argparse
    from datetime import datetime, timezone

    from horizonlens.bench.explore import explore_profile, explore_runs
    from horizonlens.bench.explore import report_lines as explore_lines
    from horizonlens.bench.run import machine
    from horizonlens.derived.build import build_all
    from horizonlens.query.store import open_store

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("corpora", type=Path, nargs="+", help="corpus folders (e.g. bench/data/corpus-100000)")
    parser.add_argument("--data", type=Path, default=Path("bench/data"), help="where the tantivy indexes go")
    parser.add_argument("--out", type=Path, default=Path("bench"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--explore-runs", type=int, default=3)
    parser.add_argument("--no-tantivy", action="store_true", help="the product's postings only")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"machine": machine(), "started_at": datetime.now(timezone.utc).isoformat(
        timespec="seconds"), "command": "python -m horizonlens.bench.search " + " ".join(argv or []), "corpora": {}}
    for corpus in args.corpora:
        build_all(corpus, log=print)  # nothing is read when the derived data is up to date
        store = open_store(corpus)
        n = int(store.scalar("SELECT count(*) FROM trajectories") or 0)
        print(f"{n:,} trajectories: search index designs")
        entry: dict[str, Any] = {"search_designs": bench_search(store, args.data, args.repeats, print,
                                                                tantivy=not args.no_tantivy)}
        print(f"{n:,} trajectories: Explore")
        entry["explore_runs"] = explore_runs(store, runs=args.explore_runs)
        entry["explore_profile"] = explore_profile(store)
        results["corpora"][str(n)] = entry
        store.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    m = results["machine"]
    lines = ["# Search index and Explore", "", f"Command: `{results['command']}` · started {results['started_at']}",
             "", f"Machine: {m.get('cpu', '?')}, {m.get('cpus')} cores, {m.get('memory_gb', '?')} GiB RAM; DuckDB "
             f"{m['duckdb']}, pyarrow {m['pyarrow']}.", *report_lines(results), *explore_lines(results)]
    (args.out / "SEARCH.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
