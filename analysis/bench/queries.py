"""Query-layer benchmarks, each beside the baseline a user would otherwise have.

- Explore query (filter + sort + one page + total count): the DuckDB store vs pandas reading the
  Parquet files and filtering in memory per request, and vs scanning raw JSON files per request.
- Full-text search over step content: DuckDB vs a Python substring scan of the same columns.
- Open one trajectory (all its steps): DuckDB vs pandas reading the steps with a filter.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from horizonlens.bench.timing import interleaved
from horizonlens.corpus.store import CorpusStore, TrajectoryFilter

EXPLORE = TrajectoryFilter(domains=["search", "engineering"], outcomes=["failure"], min_steps=10)
NEEDLE = "insufficient balance"  # occurs in a small share of tool_calling observations


def explore_store(store: CorpusStore) -> int:
    """The Explore page's query through the store: filter, sort, first page; the match count."""
    return store.list_trajectories(EXPLORE, sort="n_steps", descending=True, offset=0, limit=50).total


def explore_pandas(root: Path) -> int:
    """Baseline: the same Explore query in pandas over the trajectories Parquet files."""
    df = pd.read_parquet(root / "trajectories", columns=[
        "trajectory_id", "task_id", "trial", "source", "domain", "agent", "teacher", "outcome", "reward", "n_steps",
        "n_tokens", "n_failed_checks", "first_failed_step", "started_at", "duration_s", "cost_usd"],
        partitioning=None)  # the domain is a column in the files; do not also derive it from the paths
    hit = df[df["domain"].astype(str).isin(EXPLORE.domains) & df["outcome"].isin(EXPLORE.outcomes)
             & (df["n_steps"] >= EXPLORE.min_steps)]
    hit.sort_values(["n_steps", "trajectory_id"], ascending=[False, True]).head(50)
    return len(hit)


def explore_json(json_dir: Path) -> int:
    """What a file-based viewer does per request: read every JSON file and filter."""
    rows = []
    for f in sorted(json_dir.glob("*.json")):
        t = json.loads(f.read_text())
        if t["domain"] in EXPLORE.domains and t["outcome"] in EXPLORE.outcomes and t["n_steps"] >= EXPLORE.min_steps:
            rows.append((t["n_steps"], t["trajectory_id"]))
    rows.sort(key=lambda r: (-r[0], r[1]))
    return len(rows)


def fts_store(store: CorpusStore, mode: str = "exact") -> int:
    """Mode exact: literal substring, scanning step content; words: all words, through the word index."""
    return store.list_trajectories(TrajectoryFilter(text=NEEDLE, text_mode=mode), limit=50).total


def fts_python(root: Path) -> int:
    """Read the text columns and scan them in Python (per request, as a viewer without an index would)."""
    table = pq.read_table(root / "steps", columns=["trajectory_id", "reasoning", "message", "observations"],
                          partitioning=None)
    ids = table["trajectory_id"].to_pylist()
    hits = set()
    needle = NEEDLE.lower()
    for tid, r, m, obs in zip(ids, table["reasoning"].to_pylist(), table["message"].to_pylist(),
                              table["observations"].to_pylist(), strict=True):
        text = " ".join([r or "", m or "", *((o.get("content") or "") for o in obs or [])]).lower()
        if needle in text:
            hits.add(tid)
    return len(hits)


def open_store_steps(store: CorpusStore, tid: str) -> int:
    """Open one trajectory through the store (what the Trajectory page reads); its step count."""
    return store.steps(tid).num_rows


def open_pandas(root: Path, tid: str) -> int:
    """Baseline: open one trajectory with a pandas Parquet filter."""
    return len(pd.read_parquet(root / "steps", filters=[("trajectory_id", "=", tid)], partitioning=None)
               .sort_values("step"))


def bench_queries(store: CorpusStore, json_dir: Path | None, repeats: int = 5, seed: int = 0,
                  python_fts: bool = True) -> dict[str, Any]:
    """Explore, full-text search and open-trajectory timings, each beside its baselines, interleaved."""
    root = store.root
    if not isinstance(root, Path):  # the pandas and pure-Python baselines read local files
        raise ValueError(f"{root}: the query benchmark runs on a local corpus")
    ids = store.query("SELECT trajectory_id FROM trajectories USING SAMPLE 200 ROWS (reservoir, 1)"
                      ).column(0).to_pylist()
    rng = random.Random(seed)
    picks = iter(rng.choice(ids) for _ in range(10_000))
    assert explore_store(store) == explore_pandas(root), "baseline and store disagree"
    out: dict[str, Any] = {}
    explore = {"duckdb": lambda: explore_store(store), "pandas": lambda: explore_pandas(root)}
    if json_dir is not None:
        explore["json_files"] = lambda: explore_json(json_dir)
    out["explore"] = interleaved(explore, repeats=repeats)
    fts = {"duckdb": lambda: fts_store(store, "exact")}
    if store.has_word_index:
        fts["duckdb_word_index"] = lambda: fts_store(store, "words")
    if python_fts:
        assert fts_store(store) == fts_python(root), "baseline and store disagree"
        fts["python_scan"] = lambda: fts_python(root)
    out["fts"] = interleaved(fts, repeats=max(3, repeats // 2))
    out["fts_hits"] = {"exact": fts_store(store, "exact"),
                       "words": fts_store(store, "words") if store.has_word_index else None}
    out["open_trajectory"] = interleaved({"duckdb": lambda: open_store_steps(store, next(picks)),
                                          "pandas_filter": lambda: open_pandas(root, next(picks))}, repeats=repeats)
    return out
