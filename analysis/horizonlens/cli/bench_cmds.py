"""`horizonlens bench`: the benchmarks at scale (bench/README.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from horizonlens.cli.base import app, fail


@app.command()
def bench(scale: Annotated[str, typer.Option(help="tiny (2k), small (10k), medium (10k+100k), "
                                                 "large (10k+100k+1M trajectories), none.")] = "small",
          out: Annotated[Path, typer.Option(help="Where RESULTS.md and results JSON go.")] = Path("bench"),
          data: Annotated[Optional[Path], typer.Option(help="Where the generated corpora live (default OUT/data).")
                          ] = None,
          repeats: Annotated[int, typer.Option(help="Repetitions per measurement.")] = 5,
          app_timings: Annotated[bool, typer.Option("--app/--no-app", help="Also time the app in headless Chromium.")
                                 ] = True,
          shape: Annotated[Optional[list[str]], typer.Option(
              help="Also replay at a real model's routing shape (agents-a1, qwen3-30b-a3b, deepseek-v3, "
                   "gpt-oss-120b; repeatable); with --scale none, only that.")] = None,
          export: Annotated[bool, typer.Option("--export/--no-export", help="Also export every run of the corpora up "
                                                                            "to 100k trajectories (runs/s, peak RSS) "
                                                                            "beside plain pyarrow reads.")] = True,
          sessions: Annotated[Optional[str], typer.Option(
              help="Also run N concurrent headless-browser sessions (Explore, Trajectory, Next x 3) against one "
                   "server on the 10^5-trajectory corpus, for each N of a comma-separated list such as 1,4,8,16; "
                   "writes CONCURRENCY.md. With --scale none, only that.")] = None,
          watch: Annotated[bool, typer.Option("--watch/--no-watch", help="Also time runs written into a watched "
                                                                         "folder until they are queryable (import "
                                                                         "--watch; the bundled sample and 10^5 "
                                                                         "trajectories, p50/p95 over 21 events); "
                                                                         "writes CONCURRENCY.md. With --scale none, "
                                                                         "only that.")] = False,
          pages_only: Annotated[bool, typer.Option("--pages-only", help="Only the pages in headless Chromium beside "
                                                                         "the floor, on the bundled corpus and the "
                                                                         "scale's corpora (reused from --data); "
                                                                         "updates results-SCALE.json's pages and "
                                                                         "writes PAGES.md.")] = False,
          ) -> None:
    """Reproducible benchmarks at scale, each figure beside a baseline measured in the same run."""
    from horizonlens.bench.run import pages_only as only_pages
    from horizonlens.bench.run import run

    if pages_only:
        from horizonlens.bench.scale import SCALES

        if scale not in SCALES:
            fail(f"--pages-only needs a scale with corpora: {', '.join(SCALES)}")
        if not app_timings or shape or sessions or watch:
            fail("--pages-only times only the pages: leave out --no-app, --shape, --sessions and --watch")
        only_pages(scale, out, data or out / "data", repeats, log=typer.echo)
        typer.echo(f"wrote {out / f'results-{scale}.json'} (pages) and {out / 'PAGES.md'}")
        return

    try:
        levels = [int(n) for n in sessions.split(",")] if sessions else []
        if any(n < 1 for n in levels):
            raise ValueError("--sessions takes numbers of sessions of at least 1, e.g. 1,4,8,16")
        run(scale, out, repeats=repeats, data=data, with_app=app_timings, log=typer.echo, shapes=shape or [],
            sessions=levels, with_export=export, with_watch=watch)
    except ValueError as exc:
        fail(str(exc))
    if scale != "none" or shape:
        typer.echo(f"wrote {out / 'RESULTS.md'}")
    if levels or watch:
        typer.echo(f"wrote {out / 'CONCURRENCY.md'}")
