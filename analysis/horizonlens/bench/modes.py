"""Failure modes at scale: `modes` on 10^5 failed steps, beside a plain TF-IDF fit of the same texts.

Each variant runs in a fresh process (so its peak RSS, VmHWM, is its own), on the failed steps that a predicate
selects from a replicated corpus (bench/scale.py): whole replicas (`~rNNNN`) until there are at least
`MODES_STEPS` failed steps. Variants:

- `modes`: `find_modes` end to end, as `horizonlens modes --where PRED` runs it (nothing kept);
- `tfidf`: the baseline, scikit-learn's `TfidfVectorizer` (word 1-2 grams and char_wb 3-5 grams, as the modes
  use) fitted on every one of the same texts, and nothing else;
- `modes_distinct` and `tfidf_distinct`: the same two on texts made distinct (the modes: reading the steps,
  then `cluster_steps` on the changed texts). A replicated corpus repeats its 2,400 base runs, so its failed
  steps have only about 1,400 distinct texts and the modes represent each once; here every text gets random
  words appended, so every step is a text of its own (a worst case: real runs repeat their error messages).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Callable

MODES_STEPS = 100_000
VARIANTS = ("modes", "tfidf", "modes_distinct", "tfidf_distinct")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def replica_predicate(corpus: Path, n: int = MODES_STEPS) -> tuple[str | None, int]:
    """(predicate over the step `s`, failed steps it selects): the first replicas holding at least n failed steps.

    None selects every failed step (the corpus has no more than n).
    """
    from horizonlens.query.store import open_store

    store = open_store(corpus)
    try:
        rows = store.query("SELECT split_part(trajectory_id, '~', 2) AS replica, count(*) AS n FROM steps "
                           "WHERE check_passed = false GROUP BY 1 ORDER BY 1").to_pylist()
    finally:
        store.close()
    total = 0
    for i, row in enumerate(rows):
        total += int(row["n"])
        if total >= n and i + 1 < len(rows):
            return f"split_part(s.trajectory_id, '~', 2) <= '{row['replica']}'", total
    return None, total


def distinct_texts(texts: list[str], seed: int = 0) -> list[str]:
    """Every text with three random words and a word of its own appended: no two texts are the same."""
    r = random.Random(seed)
    vocab = ["".join(r.choice(LETTERS) for _ in range(7)) for _ in range(20_000)]
    return [f"{t} {r.choice(vocab)} {r.choice(vocab)} {r.choice(vocab)} w{_letters(i)}" for i, t in enumerate(texts)]


def _letters(i: int) -> str:
    """A number written in letters, so that the word survives the masking of numbers and ids."""
    out = ""
    while True:
        i, d = divmod(i, len(LETTERS))
        out = LETTERS[d] + out
        if i == 0:
            return out


def run_variant(corpus: str, where: str | None, variant: str) -> dict[str, Any]:
    """One variant in this process: its wall time and what it found (called in a fresh process)."""
    from horizonlens.metrics import modes
    from horizonlens.query.store import open_store

    store = open_store(corpus)
    started = time.perf_counter()
    if variant == "modes":
        result = modes.find_modes(store, where, keep=False)
    else:
        steps = modes.failed_steps(store, modes.select_failed(store, where))
        if variant.endswith("_distinct"):
            steps["text"] = distinct_texts(steps["text"].tolist())
        if variant.startswith("tfidf"):
            texts = steps["text"].tolist()
            started = time.perf_counter()  # the baseline is the fit alone: reading the texts is not counted
            _plain_tfidf(texts)
            return {"variant": variant, "wall_s": time.perf_counter() - started, "failed_steps": len(texts),
                    "distinct_texts": len(set(texts))}
        result = modes.cluster_steps(steps)
    return {"variant": variant, "wall_s": time.perf_counter() - started, "failed_steps": result.note["failed_steps"],
            "distinct_texts": result.note["distinct_texts"], "fitted_steps": result.note["fitted_steps"],
            "modes": int((result.modes["mode"] >= 0).sum())}


def _plain_tfidf(texts: list[str]) -> Any:
    """The baseline: scikit-learn's vectorizers, as the modes configure them, fitted on every text."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer

    from horizonlens.metrics.modes import CHAR_FEATURES

    words = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, max_features=CHAR_FEATURES)
    return hstack([words.fit_transform(texts), chars.fit_transform(texts)]).tocsr()


def bench_modes(corpus: Path, child: Callable[[str], dict[str, Any]], trajectories: int,
                log: Callable[[str], None] = print, variants: tuple[str, ...] = VARIANTS) -> dict[str, Any]:
    """Every variant in its own fresh process on about MODES_STEPS failed steps of `corpus`; ratios to `tfidf`."""
    where, selected = replica_predicate(corpus)
    rows = []
    for variant in variants:
        log(f"  modes: {variant}")
        rows.append(child(f"from horizonlens.bench.modes import run_variant\n"
                          f"RESULT = run_variant({str(corpus)!r}, {where!r}, {variant!r})"))
    by = {r["variant"]: r for r in rows}
    for r in rows:
        base = by.get("tfidf_distinct" if r["variant"].endswith("_distinct") else "tfidf")
        r["ratio_to_tfidf"] = r["wall_s"] / base["wall_s"] if base and base["wall_s"] else None
    return {"trajectories": trajectories, "where": where, "failed_steps": selected, "rows": rows}


def report_lines(results: dict[str, Any]) -> list[str]:
    """RESULTS.md's section on failure modes at scale."""
    m = results.get("modes")
    if not m:
        return []
    names = {"modes": "`modes` (find_modes, end to end)", "tfidf": "plain TF-IDF fit of the same texts (baseline)",
             "modes_distinct": "`modes` clustering of the texts made distinct",
             "tfidf_distinct": "plain TF-IDF fit of the distinct texts (baseline)"}
    title = f"## Failure modes on {m['failed_steps']:,} failed steps ({m['trajectories']:,}-trajectory corpus)"
    lines = ["", title, "",
             (f"Selected with `--where \"{m['where']}\"`. " if m["where"] else "Every failed step of the corpus. ") +
             "Each row ran in a fresh process; peak RSS is its VmHWM. "
             "The ratio is to the plain TF-IDF fit (word 1-2 and char_wb 3-5 grams) of the same texts in the same "
             "run. *Distinct*: every text made unique (a worst case; see bench/modes.py).", "",
             "| what | failed steps | distinct texts | wall | peak RSS | ratio to TF-IDF |", "|---|---|---|---|---|---|"
             ]
    for r in m["rows"]:
        ratio = f"{r['ratio_to_tfidf']:.2f}×" if r.get("ratio_to_tfidf") is not None else "—"
        lines.append(f"| {names.get(r['variant'], r['variant'])} | {r['failed_steps']:,} | "
                     f"{r['distinct_texts']:,} | {r['wall_s']:.1f} s | {r['peak_rss_mb']:,.0f} MB | {ratio} |")
    return lines
