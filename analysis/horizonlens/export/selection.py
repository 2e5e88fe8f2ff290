"""What goes into a training export: the options, and the runs they select from a corpus.

A selection is the Explore filter (`TrajectoryFilter`) and/or a read-only condition over `trajectories`
(checked by the SQL console's gate), then `only_success` and `best_of_task`. The runs come back sorted by
trajectory id, so the same options on the same corpus state select the same runs in the same order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from horizonlens.errors import ExportError
from horizonlens.query.console import check_predicate
from horizonlens.query.filters import TrajectoryFilter, where_sql
from horizonlens.query.store import CorpusStore

FORMATS = ("openai-jsonl", "sharegpt", "hf-parquet")
TRUNCATE_AT = ("none", "first-failed-check", "decisive")
OVER_MAX_TOKENS = ("drop", "flag")
# The best run of a task: success before unknown before failure, then the higher reward, then fewer steps.
BEST_ORDER = ("CASE t.outcome WHEN 'success' THEN 0 WHEN 'unknown' THEN 1 ELSE 2 END, t.reward DESC NULLS LAST, "
              "t.n_steps NULLS LAST, t.trajectory_id")


@dataclass
class ExportOptions:
    """Every choice an export makes; recorded in its manifest (`describe`)."""

    format: str = "openai-jsonl"  # openai-jsonl | sharegpt | hf-parquet
    where: str | None = None  # a read-only condition over `trajectories` (SQL, as in the SQL console)
    filter: TrajectoryFilter = field(default_factory=TrajectoryFilter)  # the Explore page's filters
    only_success: bool = False
    truncate_at: str = "none"  # cut before the first failed check, or before the annotated decisive step
    best_of_task: bool = False  # one run per task: the best by outcome, then reward, then fewest steps
    dedupe: bool = False  # drop a run whose exported conversation equals an earlier one's
    max_tokens: int | None = None  # runs longer than this under the checkpoint's chat template ...
    over_max_tokens: str = "drop"  # ... are dropped or flagged (column over_max_tokens)
    checkpoint: str | None = None  # whose tokenizer and chat template count the tokens
    redact: list[str] = field(default_factory=list)  # the user's redaction patterns (export/redact.py)
    default_redactions: bool = True  # API keys, bearer tokens, e-mail addresses
    max_runs: int | None = None  # refuse a selection larger than this (the app's bound)

    def validate(self) -> None:
        """ExportError for a choice that cannot work, before anything is read or written."""
        for name, value, allowed in (("--format", self.format, FORMATS), ("--truncate-at", self.truncate_at,
                                                                          TRUNCATE_AT),
                                     ("--over-max-tokens", self.over_max_tokens, OVER_MAX_TOKENS)):
            if value not in allowed:
                raise ExportError(f"{name} {value!r}: choose one of {', '.join(allowed)}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ExportError("--max-tokens must be at least 1")
        if self.max_tokens is not None and not self.checkpoint:
            raise ExportError("--max-tokens counts tokens with a checkpoint's tokenizer and chat template: "
                              "give --checkpoint DIR too")

    def describe(self) -> dict[str, Any]:
        """The selection and options as JSON for the manifest (filter fields left at their defaults omitted)."""
        default = TrajectoryFilter()
        flt = {f.name: getattr(self.filter, f.name) for f in fields(self.filter)
               if getattr(self.filter, f.name) != getattr(default, f.name)}
        if not self.filter.text:
            flt.pop("text_mode", None)  # how text is matched means nothing without text
        out = {k: v for k, v in asdict(self).items() if k not in ("filter", "redact", "default_redactions",
                                                                   "max_runs")}
        out["filter"] = flt
        return out


def selection_sql(store: CorpusStore, options: ExportOptions,
                  columns: str = "t.trajectory_id") -> tuple[str, list[Any]]:
    """The query (and its parameters) whose rows are the selected runs' `columns`, sorted by trajectory id."""
    clauses, params = store.filter_clauses(options.filter)
    if options.where and options.where.strip():
        clauses.append(check_predicate(store, options.where))
    if options.only_success:
        clauses.append("t.outcome = 'success'")
    sql = f"SELECT {columns} FROM trajectories t{where_sql(clauses)}"
    if options.best_of_task:
        sql += (" QUALIFY row_number() OVER (PARTITION BY coalesce(t.task_id, t.trajectory_id) "
                f"ORDER BY {BEST_ORDER}) = 1")
    return sql + " ORDER BY t.trajectory_id", params


def select_runs(store: CorpusStore, options: ExportOptions) -> tuple[list[str], list[int]]:
    """The selected runs' ids, sorted, and their token counts in the corpus.

    ExportError if the selection is empty or holds more than `max_runs` runs.
    """
    sql, params = selection_sql(store, options, "t.trajectory_id, coalesce(t.n_tokens, 0)")
    table = store.query(sql, params)
    if not table.num_rows:
        raise ExportError("the selection is empty: no run matches these filters and conditions; nothing written")
    if options.max_runs is not None and table.num_rows > options.max_runs:
        raise ExportError(f"the selection holds {table.num_rows:,} runs; here at most {options.max_runs:,} are "
                          "exported at once. Narrow the filters, or use `horizonlens export` on the command line.")
    return table.column(0).to_pylist(), table.column(1).to_pylist()
