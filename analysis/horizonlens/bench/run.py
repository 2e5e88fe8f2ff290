"""`horizonlens bench`: build the scaled corpora once, measure everything, write RESULTS.md and JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from horizonlens.bench.diff import bench_diff
from horizonlens.bench.explore import explore_profile, explore_runs
from horizonlens.bench.export import bench_export
from horizonlens.bench.queries import bench_queries, peers_row
from horizonlens.bench.scale import SCALES, build_scaled_corpus, write_json_files
from horizonlens.bench.search import bench_search
from horizonlens.bench.shape import bench_shapes
from horizonlens.bench.timing import machine
from horizonlens.derived.aggregates import AGGREGATES_DIR
from horizonlens.derived.build import build_all
from horizonlens.derived.search_index import INDEX_DIR
from horizonlens.sample.bundled import bundled_dir

T = TypeVar("T")

JSON_BASELINE_MAX = 10_000  # one JSON file per trajectory is only written for the smallest corpus
EXPORT_MAX = 100_000  # corpora up to this size are exported whole (a 1M export takes most of an hour here)


def _child(code: str, timeout: int = 1800) -> dict[str, Any]:
    """Run `code` in a fresh interpreter; it prints one JSON line last. Adds the child's peak RSS."""
    # VmHWM (peak RSS) from /proc: unlike ru_maxrss it is not inherited from the parent across fork+exec
    wrapped = code + "\nimport json as _j, re as _re\n_hwm = int(_re.search(r'VmHWM:\\s+(\\d+)', " \
                     "open('/proc/self/status').read()).group(1))\n" \
                     "print(_j.dumps({'peak_rss_mb': _hwm / 1024, **RESULT}))"
    out = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def query_memory(corpus: Path) -> dict[str, Any]:
    """Peak RSS of a process that opens the store and runs the Explore, search and open queries."""
    return _child(f"""
from horizonlens.query.store import open_store
from horizonlens.bench.queries import explore_store, fts_store, open_store_steps
s = open_store({str(corpus)!r})
tid = s.list_trajectories(limit=1).rows['trajectory_id'][0].as_py()
RESULT = {{'explore_total': explore_store(s), 'fts_hits': fts_store(s, 'exact'),
          'fts_word_hits': fts_store(s, 'words') if s.has_word_index else None, 'steps': open_store_steps(s, tid)}}
""")


def replay_memory(checkpoint: Path, corpus: Path, tokens: int) -> dict[str, Any]:
    """Peak RSS of replaying the longest sample trajectory up to `tokens` tokens (chunked)."""
    return _child(f"""
from horizonlens.query.store import open_store
from horizonlens.model.loader import load_checkpoint
from horizonlens.model.replay import replay_trajectory, ReplayConfig
s = open_store({str(corpus)!r})
tid = s.list_trajectories(sort='n_tokens', descending=True, limit=1).rows['trajectory_id'][0].as_py()
m = load_checkpoint({str(checkpoint)!r})
r = replay_trajectory(m, tid, s.steps(tid).to_pylist(), ReplayConfig(chunk_size=512, max_tokens={tokens}))
RESULT = {{'tokens': r.n_replayed, 'wall_s': r.wall_s, 'trajectory': tid}}
""")


def replay_bench(checkpoint: Path, corpus: Path, repeats: int) -> dict[str, Any]:
    """Replay timings of the longest sample trajectory, each beside one plain forward, in a fresh process."""
    return _child(f"""
from horizonlens.query.store import open_store
from horizonlens.model.loader import load_checkpoint
from horizonlens.bench.replay import bench_replay
s = open_store({str(corpus)!r})
tid = s.list_trajectories(sort='n_tokens', descending=True, limit=1).rows['trajectory_id'][0].as_py()
m = load_checkpoint({str(checkpoint)!r})
RESULT = bench_replay(m, tid, s.steps(tid).to_pylist(), tokens=2048, repeats={repeats})
RESULT['trajectory'] = tid
""")


def replay_some(checkpoint: Path, corpus: Path, count: int = 2) -> list[str]:
    """Replay a few failed, mid-length trajectories of a corpus in a fresh process; their ids.

    The Trajectory and Routing pages then have cached replays to show; the page benchmark opens the first.
    """
    return _child(f"""
from horizonlens.query.store import open_store
from horizonlens.model.batch import ensure_replayed
from horizonlens.model.loader import load_checkpoint
s = open_store({str(corpus)!r})
ids = s.query("SELECT trajectory_id FROM trajectories WHERE outcome = 'failure' AND n_failed_checks > 0 "
              "AND n_steps BETWEEN 20 AND 40 AND n_tokens < 4000 ORDER BY trajectory_id LIMIT ?",
              [{count}]).column(0).to_pylist()
m = load_checkpoint({str(checkpoint)!r})
for tid in ids:
    ensure_replayed(s, m, tid)
RESULT = {{'trajectories': ids}}
""")["trajectories"]


def page_timings(corpus: Path, checkpoint: Path, n: int, repeats: int, parts: bool = False) -> dict[str, Any]:
    """Every page in headless Chromium on one corpus, beside the floor (see `bench.pages.measure_pages`).

    `parts`: also what each part of a page costs beside the floor (`bench.pages.FLOOR_PARTS`).
    """
    from horizonlens.bench.pages import measure_pages

    ids = replay_some(checkpoint, corpus)
    return measure_pages(corpus, checkpoint, ids[0], repeats=repeats, parts=parts)


def page_repeats(repeats: int) -> int:
    """How many fresh sessions each page gets in a run of `repeats`: browser loads cost seconds each."""
    return max(3, repeats // 2)


def add_page_timings(pages: dict[str, list[dict[str, Any]]], errors: list[str], root: Path, checkpoint: Path,
                     n: int, repeats: int, parts: bool = False, **row: Any) -> None:
    """Time every page on the corpus at `root` (`page_timings`) and add a row per page to `pages` (`row` in each).

    A corpus whose pages fail is recorded in `errors` (named by its `corpus` label, else its size): the other
    corpora still count.
    """
    try:
        for name, t in page_timings(root, checkpoint, n, repeats, parts=parts).items():
            pages.setdefault(name, []).append({"trajectories": n, **row, **t})
    except Exception as exc:  # noqa: BLE001 - the rest of the results still count
        errors.append(f"{row.get('corpus', n)}: {str(exc)[:500]}")


def bundled_page_timings(data: Path, checkpoint: Path, repeats: int, log: Callable[[str], None],
                         pages: dict[str, list[dict[str, Any]]], errors: list[str]) -> None:
    """The pages on a copy of the bundled corpus (its search index and aggregates built), into `pages`."""
    from horizonlens.bench.shape import copy_corpus

    log("pages in headless Chromium on the bundled corpus")
    corpus = copy_corpus(bundled_dir("corpus"), data / "corpus-bundled")
    build_all(corpus, log=lambda m: log(f"  {m}"))
    n = _read_store(corpus, lambda store: int(store.summary()["trajectories"]))
    add_page_timings(pages, errors, corpus, checkpoint, n, repeats, parts=True, corpus="bundled")


def _read_store(corpus: Path, read: Callable[[Any], T]) -> T:
    """`read(store)` on the corpus's store, closed afterwards."""
    from horizonlens.query.store import open_store

    store = open_store(corpus)
    try:
        return read(store)
    finally:
        store.close()


def _modes(data: Path, sizes: list[int], log: Callable[[str], None]) -> dict[str, Any]:
    """`modes` on MODES_STEPS failed steps: the smallest corpus that has them (else the largest, all its steps)."""
    from horizonlens.bench.modes import MODES_STEPS, bench_modes

    log("failure modes")
    # about four failed steps per trajectory in the replicated sample
    n = next((n for n in sizes if n * 4 >= MODES_STEPS), sizes[-1])
    return bench_modes(data / f"corpus-{n}", _child, n, log)


CONCURRENCY_CORPUS = 100_000  # trajectories in the corpus the concurrent sessions browse


def concurrency(out: Path, data: Path, sessions: Sequence[int], log: Callable[[str], None] = print) -> dict[str, Any]:
    """Concurrent browser sessions on the 10^5-trajectory corpus (bench/concurrency.py); CONCURRENCY.md and JSON."""
    from horizonlens.bench.concurrency import bench_concurrency

    corpus = build_scaled_corpus(bundled_dir("corpus"), data / f"corpus-{CONCURRENCY_CORPUS}", CONCURRENCY_CORPUS,
                                 log)
    build_all(corpus, log=lambda m: log(f"  {m}"))  # up to date already after a first run: nothing is read
    log(f"concurrent sessions: {', '.join(map(str, sessions))}")
    results = {"machine": machine(), "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               **bench_concurrency(corpus, sessions, log=log)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "concurrency.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    write_server_report(out)
    return results


def watch(out: Path, data: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Watched-folder latencies (bench/watch.py) into copies of the bundled sample and the 10^5-trajectory corpus."""
    from horizonlens.bench.watch import bench_watch

    corpus = build_scaled_corpus(bundled_dir("corpus"), data / f"corpus-{CONCURRENCY_CORPUS}", CONCURRENCY_CORPUS,
                                 log)
    build_all(corpus, log=lambda m: log(f"  {m}"))
    log("watched folder")
    results = {"machine": machine(), "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "corpora": [bench_watch(c, data, log=log) for c in (bundled_dir("corpus"), corpus)]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "watch.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    write_server_report(out)
    return results


def write_server_report(out: Path) -> Path:
    """CONCURRENCY.md in `out` from the team-server benchmarks whose JSON is there (sessions, live runs)."""
    from horizonlens.bench.concurrency import session_lines
    from horizonlens.bench.watch import report_lines

    lines = ["# The team server: many users at once, and live runs", "",
             "Written by `horizonlens bench` from `concurrency.json` (`--sessions`) and `watch.json` (`--watch`) "
             "beside this file; each section is from its own run."]
    if (out / "concurrency.json").exists():
        lines += ["", *session_lines(json.loads((out / "concurrency.json").read_text()))]
    if (out / "watch.json").exists():
        lines += ["", *report_lines(json.loads((out / "watch.json").read_text()))]
    path = out / "CONCURRENCY.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def pages_only(scale: str, out: Path, data: Path, repeats: int, log: Callable[[str], None] = print
               ) -> dict[str, Any]:
    """Only the pages in headless Chromium beside the floor, on the bundled corpus and the scale's corpora.

    The bundled corpus also times the floor's parts; the scale's corpora in `data` are generated if missing and
    reused if there. A first load reads the corpus aggregates and tool-use summaries, not the search index, so
    only those are brought up to date (an index already there is kept; building one at 10^6 runs takes most of an
    hour). Without one, Explore also shows its "Build index" note, and PAGES.md says which corpora had none.
    `repeats` as a full run takes it (`page_repeats`). The pages go into results-SCALE.json
    beside what an earlier full run wrote there (`pages_started_at` says when), and PAGES.md gets their tables.
    """
    from horizonlens.bench.pages import report_lines

    checkpoint = bundled_dir("checkpoint")
    pages: dict[str, list[dict[str, Any]]] = {}
    errors: list[str] = []
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    repeats = page_repeats(repeats)
    bundled_page_timings(data, checkpoint, repeats, log, pages, errors)
    unindexed: list[int] = []
    for n in SCALES[scale]:
        log(f"pages on the corpus of {n:,} trajectories")
        corpus = build_scaled_corpus(bundled_dir("corpus"), data / f"corpus-{n}", n, log)
        build_all(corpus, log=lambda m: log(f"  {m}"), index=False)
        if not _read_store(corpus, lambda store: store.has_word_index):
            unindexed.append(n)
        add_page_timings(pages, errors, corpus, checkpoint, n, repeats)
    path = out / f"results-{scale}.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"scale": scale, "corpora": {}}
    m, command = machine(), f"horizonlens bench --scale {scale} --pages-only --repeats {repeats}"
    results.update(pages=pages, page_errors=errors, pages_started_at=started, pages_machine=m,
                   pages_command=command)
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "PAGES.md").write_text("\n".join([
        f"# Pages beside the floor ({scale})", "",
        f"Command: `{command}` · started {started}", "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cpus')} cores, {m.get('memory_gb', '?')} GiB RAM. Rows "
        "`floor+PART` are the floor with one of that part (app/floor.py): what each part of a page costs.",
        *([f"Corpora without a search index (Explore shows its \"Build index\" note there): "
           f"{', '.join(f'{n:,}' for n in unindexed)}."] if unindexed else []),
        *report_lines(pages), *(f"- error: {e}" for e in errors), ""]))
    return results


def run(scale: str, out: Path, repeats: int = 5, data: Path | None = None, with_app: bool = True,
        log: Callable[[str], None] = print, shapes: Sequence[str] = (), sessions: Sequence[int] = (),
        with_export: bool = True, with_watch: bool = False) -> dict[str, Any]:
    """Run the benchmarks of one scale (`none`: only shapes, sessions and the watch), write the reports; the results.

    `sessions`: also (or, with scale `none`, only) the concurrent-sessions benchmark at these numbers of sessions.
    `with_watch`: also (or, with scale `none`, only) the watched-folder latencies. Both write CONCURRENCY.md.
    """
    from horizonlens.query.store import open_store

    if scale not in SCALES and scale != "none":
        raise ValueError(f"scale must be one of {', '.join(SCALES)} or none")
    base = bundled_dir("corpus")
    checkpoint = bundled_dir("checkpoint")
    data = data or out / "data"
    if scale == "none" and not shapes:
        server: dict[str, Any] = {}
        if sessions:
            server["concurrency"] = concurrency(out, data, sessions, log)
        if with_watch:
            server["watch"] = watch(out, data, log)
        return server
    results: dict[str, Any] = {"scale": scale, "machine": machine(), "started_at": datetime.now(timezone.utc)
                               .isoformat(timespec="seconds"), "command": f"horizonlens bench --scale {scale}",
                               "corpora": {}}
    pages: dict[str, list[dict[str, Any]]] = {}
    peers: dict[str, list[dict[str, Any]]] = {}
    if with_app and scale != "none":
        bundled_page_timings(data, checkpoint, page_repeats(repeats), log, pages,
                             results.setdefault("page_errors", []))
    for n in SCALES.get(scale, []):
        log(f"corpus of {n:,} trajectories")
        started = time.perf_counter()
        corpus = build_scaled_corpus(base, data / f"corpus-{n}", n, log)
        built = time.perf_counter() - started
        json_dir = write_json_files(base, data / f"json-{n}", n) if n <= JSON_BASELINE_MAX else None
        log("  search index and aggregates")
        derived = build_all(corpus, log=lambda m: log(f"  {m}"))
        store = open_store(corpus)
        size = {folder: sum(p.stat().st_size for p in (corpus / folder).rglob("*") if p.is_file())
                for folder in ("trajectories", "steps", INDEX_DIR, AGGREGATES_DIR)}
        log("  queries")
        entry = {"trajectories": n, "steps": store.summary()["steps"],
                 "parquet_bytes": size["trajectories"] + size["steps"], "build_s": round(built, 1),
                 "index": {"rows": derived["index"]["rows"], "build_s": derived["index"]["build_s"],
                           "bytes": size[INDEX_DIR]},
                 "aggregates": {"rows": derived["aggregates"]["rows"], "build_s": derived["aggregates"]["build_s"],
                                "bytes": size[AGGREGATES_DIR]},
                 **bench_queries(store, json_dir, repeats=repeats, python_fts=n <= 100_000)}
        for query in ("explore", "search_exact", "open_trajectory"):
            peers.setdefault(query, []).append(peers_row(n, entry[query]))
        log("  search index designs")
        entry["search_designs"] = bench_search(store, data, repeats=repeats, log=lambda m: log(f"  {m}"))
        log("  Explore, three runs in a row, and its plans")
        entry["explore_runs"] = explore_runs(store)
        entry["explore_profile"] = explore_profile(store)
        log("  run-set diff")
        entry["diff"] = bench_diff(store, repeats=max(3, repeats // 2))
        log("  memory")
        entry["query_memory"] = query_memory(corpus)
        results["corpora"][str(n)] = entry
        store.close()
        if with_export and n <= EXPORT_MAX:
            log("  export")
            results.setdefault("export", {})[str(n)] = bench_export(corpus, data / "exports", _child)
        if with_app:
            log("  pages in headless Chromium")
            add_page_timings(pages, results.setdefault("page_errors", []), corpus, checkpoint, n,
                             page_repeats(repeats))
    if scale != "none":
        results["pages"] = pages
        results["peers"] = peers
        results["modes"] = _modes(data, SCALES[scale], log)
        log("replay")
        results["replay"] = replay_bench(checkpoint, base, repeats)
        results["replay_memory"] = [replay_memory(checkpoint, base, t) for t in (2048, 8192, 32768)]
    if shapes:  # replay and routing storage at real routing shapes (bench/shape.py)
        results["shapes"] = bench_shapes(list(shapes), data, _child, log)
        results["command"] += "".join(f" --shape {name}" for name in shapes)
        if with_app:  # the app in Chromium at those shapes (bench/shape_app.py)
            from horizonlens.bench.shape_app import bench_shape_app

            try:
                results["shape_app"] = bench_shape_app(list(shapes), data, log)
            except Exception as exc:  # noqa: BLE001 - the rest of the results still count
                results["shape_app"] = {"error": str(exc)[:500]}
    if sessions:
        results["concurrency"] = concurrency(out, data, sessions, log)
    if with_watch:
        results["watch"] = watch(out, data, log)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results-{scale}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    from horizonlens.bench.report import write_report

    write_report(results, out)
    return results
