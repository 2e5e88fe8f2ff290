"""Labels read back: a run's labels, a label's versions, the labels in use, and label exports."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa

from horizonlens.errors import CorpusError, LabelError
from horizonlens.labels.annotations import CURRENT_VIEW, HISTORY_VIEW, export_bytes
from horizonlens.query.store import CorpusStore
from horizonlens.storage.atomic import write_bytes_atomic


def labels_of(store: CorpusStore, trajectory_id: str, step: int | None = None, offset: int = 0,
              limit: int | None = None) -> pa.Table:
    """The current labels of one trajectory: run-level ones first, then by step and time.

    `step`: only the run-level labels and that step's. `offset` and `limit` page through them (a page ships a
    bounded number of labels, however many a run has).
    """
    where = "trajectory_id = ?"
    params: list[Any] = [trajectory_id]
    if step is not None:
        where += " AND (step IS NULL OR step = ?)"
        params.append(int(step))
    page = f" LIMIT {int(limit)} OFFSET {max(0, int(offset))}" if limit is not None else ""
    return store.query(f"SELECT * FROM {CURRENT_VIEW} WHERE {where} "
                       f"ORDER BY step NULLS FIRST, created_at, annotation_id{page}", params)


def label_counts(store: CorpusStore, trajectory_id: str, n_steps: int, steps_shown: int = 1_000) -> dict[str, Any]:
    """How one trajectory's current labels spread: `total`, `steps` (the first labelled steps), and `past_end`.

    `past_end` counts labels on a step the run does not have (written on a longer version of it).
    """
    row = store.query(f"SELECT count(*) AS total, count(*) FILTER (WHERE step >= ?) AS past_end FROM {CURRENT_VIEW} "
                      "WHERE trajectory_id = ?", [int(n_steps), trajectory_id]).to_pylist()[0]
    steps = store.query(f"SELECT DISTINCT step FROM {CURRENT_VIEW} WHERE trajectory_id = ? AND step IS NOT NULL "
                        "ORDER BY step LIMIT ?", [trajectory_id, int(steps_shown)]).column(0).to_pylist()
    return {"total": int(row["total"]), "past_end": int(row["past_end"] or 0), "steps": steps}


def label_history(store: CorpusStore, annotation_id: str) -> pa.Table:
    """Every version of one annotation, oldest first (tombstones included)."""
    return store.query(f"SELECT * FROM {HISTORY_VIEW} WHERE annotation_id = ? ORDER BY version",
                       [annotation_id])


def label_values(store: CorpusStore, limit: int = 2_000) -> list[str]:
    """The labels in use (for the 'has label' filter), sorted; the `limit` most used when there are more."""
    return store.query(f"SELECT label FROM (SELECT label, count(*) AS n FROM {CURRENT_VIEW} WHERE label IS NOT NULL "
                       "GROUP BY label ORDER BY n DESC, label LIMIT ?) ORDER BY label", [int(limit)]
                       ).column(0).to_pylist()


def label_categories(store: CorpusStore) -> pa.Table:
    """Per (category, source) of the current labels: how many labels, runs and steps carry it."""
    return store.query(f"SELECT category, source, count(*) AS labels, count(DISTINCT trajectory_id) AS trajectories, "
                       f"count(step) AS step_labels FROM {CURRENT_VIEW} GROUP BY ALL ORDER BY category, source")


def all_labels(store: CorpusStore, history: bool = False) -> pa.Table:
    """Every current label (or, with `history`, every version including tombstones), in a stable order."""
    view = HISTORY_VIEW if history else CURRENT_VIEW
    return store.query(f"SELECT * FROM {view} ORDER BY trajectory_id, step NULLS FIRST, annotation_id"
                       + (", version" if history else ""))


EXPORT_FORMATS = ("csv", "parquet")


def export_labels(store: CorpusStore, path: Path | str, fmt: str | None = None, history: bool = False) -> int:
    """Write the labels to a CSV or Parquet file (format from `fmt` or the suffix); returns the row count."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in EXPORT_FORMATS:
        raise LabelError(f"cannot export to {fmt or 'a file without a suffix'!r}; choose csv or parquet")
    table = all_labels(store, history)
    try:
        write_bytes_atomic(export_bytes(table, fmt), path)
    except CorpusError as exc:
        raise LabelError(str(exc)) from exc
    return table.num_rows


def known_trajectories(store: CorpusStore, ids: Iterable[str]) -> set[str]:
    """Which of these trajectory ids the corpus has."""
    wanted = sorted(set(ids))
    found: set[str] = set()
    for i in range(0, len(wanted), 10_000):
        chunk = wanted[i:i + 10_000]
        found.update(store.query(f"SELECT trajectory_id FROM trajectories WHERE trajectory_id IN "
                                 f"({', '.join('?' for _ in chunk)})", chunk).column(0).to_pylist())
    return found
