"""A word index over step content, so full-text search does not scan every step.

`corpus/index/words/*.parquet` holds one row per (word, trajectory) — lower-cased words of the
task and of the step fields the text filter searches — sorted by word so DuckDB's row-group statistics skip
straight to the words asked for. `corpus/index/manifest.json` records the step files it was
built from; when they change (an import that did not rebuild it), the index is stale and searches fall back to the
exact scan until `horizonlens index CORPUS` rebuilds it.

Word search means: every word of the query occurs somewhere in the trajectory (any order), as a
whole word. The exact mode (a literal substring of one field) always scans.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from horizonlens.corpus.io import parquet_files, write_json_atomic
from horizonlens.corpus.quoting import sql_string
from horizonlens.corpus.text import step_text_sql

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


def _sources(root: Path) -> list[dict[str, Any]]:
    return [{"path": str(p.relative_to(root)), "size": p.stat().st_size, "mtime": int(p.stat().st_mtime)}
            for table in ("trajectories", "steps") for p in parquet_files(root / table)]


def index_is_fresh(root: Path) -> bool:
    manifest = root / INDEX_DIR / "manifest.json"
    if not manifest.exists():
        return False
    try:
        built = json.loads(manifest.read_text())
    except ValueError:
        return False
    return built.get("sources") == _sources(root) and bool(parquet_files(root / INDEX_DIR / "words"))


def build_index(root: Path | str, threads: int | None = None) -> dict[str, Any]:
    """Build (or rebuild) the word index of a corpus; returns its manifest."""
    import duckdb

    root = Path(root).resolve()
    started = time.perf_counter()
    stage = root / INDEX_DIR / f".tmp-{uuid.uuid4().hex[:8]}"
    (stage / "words").mkdir(parents=True)
    text = step_text_sql("s")
    glob = sql_string(str(root / "steps" / "**" / "*.parquet"))
    tglob = sql_string(str(root / "trajectories" / "**" / "*.parquet"))
    target = sql_string(str(stage / "words" / "part-00000.parquet"))
    con = duckdb.connect(":memory:")
    try:
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        con.execute("SET preserve_insertion_order = false")
        con.execute(f"""
          COPY (
            SELECT DISTINCT word, trajectory_id FROM (
              SELECT unnest(string_split_regex(lower({text}), '{SPLIT}')) AS word, s.trajectory_id
              FROM read_parquet({glob}, union_by_name = true) s
              UNION ALL
              SELECT unnest(string_split_regex(lower(coalesce(t.task, '')), '{SPLIT}')) AS word, t.trajectory_id
              FROM read_parquet({tglob}, union_by_name = true) t)
            WHERE word <> ''
            ORDER BY word, trajectory_id
          ) TO {target} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 65536)""")
        rows = con.execute(f"SELECT count(*) FROM read_parquet({target})").fetchone()[0]
    finally:
        con.close()
    manifest = {"sources": _sources(root), "rows": int(rows), "build_s": round(time.perf_counter() - started, 2),
                "tokenizer": SPLIT}
    final = root / INDEX_DIR / "words"
    old = root / INDEX_DIR / f".old-{uuid.uuid4().hex[:8]}"
    if final.exists():
        final.rename(old)
    (stage / "words").rename(final)
    shutil.rmtree(stage, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    write_json_atomic(manifest, root / INDEX_DIR / "manifest.json")
    return manifest
