"""Export throughput and memory at scale: `horizonlens export` of every run, beside plain pyarrow reads.

Each variant runs in a fresh process, so its peak RSS (VmHWM) is its own: the export (which streams in
batches), a plain pyarrow read of the same rows (the columns the export reads, trajectories and steps, as
whole tables) and a pyarrow scan of them batch by batch (the I/O floor, holding one batch at a time).
Throughput is runs per second of wall time; the ratio is the export's runs/s ÷ the whole-table read's.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from horizonlens.export.training import STEP_COLUMNS, TRAJECTORY_COLUMNS

Child = Callable[[str], dict[str, Any]]

_FILES = """
from horizonlens.corpus.files import open_corpus_files
files = open_corpus_files({corpus!r}).files
"""


def bench_export(corpus: Path, out: Path, child: Child, formats: tuple[str, ...] = ("openai-jsonl", "hf-parquet")
                 ) -> dict[str, Any]:
    """Runs/s and peak RSS of exporting every run of `corpus` in each format, and of the pyarrow baselines."""
    results: dict[str, Any] = {"corpus": str(corpus)}
    for fmt in formats:
        target = out / f"export-{fmt}"
        shutil.rmtree(target, ignore_errors=True)
        results[fmt] = child(f"""
import time
from horizonlens.export import ExportOptions, export_runs
from horizonlens.query.store import open_store
store = open_store({str(corpus)!r})
t = time.perf_counter()
report = export_runs(store, {str(target)!r}, ExportOptions(format={fmt!r}))
wall = time.perf_counter() - t
RESULT = {{'runs': report.runs, 'steps': report.steps, 'wall_s': wall, 'runs_per_s': report.runs / wall,
          'bytes': sum(f['bytes'] for f in report.files.values())}}
""")
        shutil.rmtree(target, ignore_errors=True)
    results["pyarrow_read"] = child(_FILES.format(corpus=str(corpus)) + f"""
import time
import pyarrow.dataset as ds
t = time.perf_counter()
trajs = ds.dataset([str(p) for p in files['trajectories']]).to_table(columns={list(TRAJECTORY_COLUMNS)!r})
steps = ds.dataset([str(p) for p in files['steps']]).to_table(columns={list(STEP_COLUMNS)!r})
wall = time.perf_counter() - t
RESULT = {{'runs': trajs.num_rows, 'steps': steps.num_rows, 'wall_s': wall, 'runs_per_s': trajs.num_rows / wall}}
""")
    results["pyarrow_batches"] = child(_FILES.format(corpus=str(corpus)) + f"""
import time
import pyarrow.dataset as ds
t = time.perf_counter()
runs = sum(b.num_rows for b in ds.dataset([str(p) for p in files['trajectories']]).to_batches(
    columns={list(TRAJECTORY_COLUMNS)!r}))
steps = sum(b.num_rows for b in ds.dataset([str(p) for p in files['steps']]).to_batches(
    columns={list(STEP_COLUMNS)!r}))
wall = time.perf_counter() - t
RESULT = {{'runs': runs, 'steps': steps, 'wall_s': wall, 'runs_per_s': runs / wall}}
""")
    base = results["pyarrow_read"]
    for fmt in formats:
        results[fmt]["runs_per_s_vs_pyarrow_read"] = results[fmt]["runs_per_s"] / base["runs_per_s"]
        results[fmt]["peak_rss_vs_pyarrow_read"] = results[fmt]["peak_rss_mb"] / base["peak_rss_mb"]
    return results


def report_lines(results: dict[str, Any]) -> list[str]:
    """The export section of RESULTS.md."""
    lines = ["", "## Export (training data)", "",
             "Every run of the corpus exported (`horizonlens export`, default redaction on), each variant in a fresh "
             "process beside plain pyarrow reads of the same rows and columns in the same run. Peak RSS is the "
             "process's VmHWM.", "",
             "| corpus | what | runs | wall | runs/s | peak RSS | runs/s ÷ pyarrow read | RSS ÷ pyarrow read |",
             "|---|---|---|---|---|---|---|---|"]
    for n, entry in results.items():
        for name in ("openai-jsonl", "hf-parquet", "pyarrow_read", "pyarrow_batches"):
            row = entry.get(name)
            if not row:
                continue
            label = {"pyarrow_read": "pyarrow read, whole tables (baseline)",
                     "pyarrow_batches": "pyarrow scan, batch by batch"}.get(name, f"export {name}")
            ratio = row.get("runs_per_s_vs_pyarrow_read")
            rss = row.get("peak_rss_vs_pyarrow_read")
            lines.append(f"| {int(n):,} | {label} | {row['runs']:,} | {row['wall_s']:,.1f} s | "
                         f"{row['runs_per_s']:,.0f} | {row['peak_rss_mb']:,.0f} MB | "
                         f"{'—' if ratio is None else f'{ratio:.3f}×'} | {'—' if rss is None else f'{rss:.2f}×'} |")
    return lines
