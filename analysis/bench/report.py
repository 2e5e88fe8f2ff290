"""bench/RESULTS.md (and a cost-vs-size plot) from a results dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from horizonlens.bench.shape import report_lines as shape_lines


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x * 1000:,.1f} ms" if x < 1 else f"{x:,.2f} s"


def _ratio(base: dict[str, Any] | None, ours: dict[str, Any] | None) -> str:
    if not base or not ours:
        return "—"
    return f"{base['median_s'] / ours['median_s']:,.1f}×"


def write_report(results: dict[str, Any], out: Path) -> Path:
    """Write RESULTS.md (and the cost-vs-size chart) from a results dict; the path of RESULTS.md."""
    m = results["machine"]
    lines = [f"# Benchmark results ({results['scale']})", "",
             f"Command: `{results['command']}` · started {results['started_at']}", "",
             f"Machine: {m.get('cpu', '?')}, {m.get('cpus')} cores, {m.get('memory_gb', '?')} GiB RAM; Python "
             f"{m['python']}, DuckDB {m['duckdb']}, pyarrow {m['pyarrow']}, torch {m.get('torch', '-')}.", "",
             "Every figure is the median (p95) of repeated runs, measured beside its baseline in the same run "
             "(variants interleaved round-robin). Corpora are replicated from the 2,400 generated sample "
             "trajectories (see bench/README.md).", "", "## Query layer", "",
             "| trajectories | steps | Parquet | Explore: DuckDB | pandas | ×pandas | raw JSON files | ×JSON | "
             "search, exact (scan) | search, words (index) | Python scan | ×exact | ×words | "
             "open trajectory: DuckDB | pandas filter | × | peak RSS |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n, c in results["corpora"].items():
        e, f, o = c["explore"], c["fts"], c["open_trajectory"]
        lines.append(
            f"| {int(n):,} | {c['steps']:,} | {c['parquet_bytes'] / 2**20:,.0f} MB | "
            f"{_ms(e['duckdb']['median_s'])} ({_ms(e['duckdb']['p95_s'])}) | {_ms(e['pandas']['median_s'])} | "
            f"{_ratio(e['pandas'], e['duckdb'])} | {_ms(e.get('json_files', {}).get('median_s'))} | "
            f"{_ratio(e.get('json_files'), e['duckdb'])} | "
            f"{_ms(f['duckdb']['median_s'])} ({_ms(f['duckdb']['p95_s'])}) | "
            f"{_ms(f.get('duckdb_word_index', {}).get('median_s'))} | "
            f"{_ms(f.get('python_scan', {}).get('median_s'))} | {_ratio(f.get('python_scan'), f['duckdb'])} | "
            f"{_ratio(f.get('python_scan'), f.get('duckdb_word_index'))} | "
            f"{_ms(o['duckdb']['median_s'])} ({_ms(o['duckdb']['p95_s'])}) | "
            f"{_ms(o['pandas_filter']['median_s'])} | "
            f"{_ratio(o['pandas_filter'], o['duckdb'])} | {c['query_memory']['peak_rss_mb']:,.0f} MB |")
    lines += ["", "Word index (built once per corpus, rebuilt after imports): " + "; ".join(
        f"{int(n):,} trajectories: {c['index']['rows']:,} (word, trajectory) rows, "
        f"{c['index']['bytes'] / 2**20:,.1f} MB, built in {c['index']['build_s']:.1f} s"
        for n, c in results["corpora"].items() if c.get("index")) + ".",
              "Search results: " + "; ".join(
        f"{int(n):,}: {c['fts_hits']['exact']:,} exact / {c['fts_hits']['words'] or 0:,} word matches"
        for n, c in results["corpora"].items() if isinstance(c.get("fts_hits"), dict)) + "."]
    r = results.get("replay")
    if r:
        t = r["timings"]
        lines += ["", "## Replay (bundled checkpoint, longest sample trajectory)", "",
                  f"{r['tokens']:,} tokens, chunk {r['chunk_size']}, {r['moe_layers']} MoE layers × "
                  f"{r['experts']} experts.", "",
                  "| what | median | ratio to one plain forward |", "|---|---|---|",
                  f"| plain forward (baseline) | {_ms(t['plain_forward']['median_s'])} | 1.00× |",
                  f"| forward with router capture | {_ms(t['captured_forward']['median_s'])} | "
                  f"{r['capture_overhead_ratio']:.3f}× |",
                  f"| chunked replay with cache | {_ms(t['chunked_replay']['median_s'])} | "
                  f"{r['chunked_vs_one_forward_ratio']:.2f}× |",
                  f"| re-forwarding each growing prefix ({r['prefix_points']} step boundaries) | "
                  f"{_ms(r['prefix_reforward']['median_s'])} | {r['prefix_reforward_vs_one_forward_ratio']:.1f}× |", "",
                  f"Whole trajectory replay (render + chunked forward + capture): {r['full_trajectory']['tokens']:,} "
                  f"tokens in {r['full_trajectory']['wall_s']:.2f} s = "
                  f"{r['full_trajectory']['tokens_per_s']:,.0f} tokens/s.", "",
                  f"Routing on disk: {r['routing_bytes_per_token_layer']:.2f} bytes per (token, layer) vs "
                  f"{r['raw_fp32_logits_bytes_per_token_layer']} bytes of raw fp32 router logits "
                  f"({r['raw_fp32_logits_bytes_per_token_layer'] / r['routing_bytes_per_token_layer']:.1f}× smaller)."]
    lines += shape_lines(results)
    mem = results.get("replay_memory")
    if mem:
        lines += ["", "Peak RSS of replay by trajectory length (chunked, bounded):", "",
                  "| tokens replayed | peak RSS | wall |", "|---|---|---|"]
        lines += [f"| {x['tokens']:,} | {x['peak_rss_mb']:,.0f} MB | {x['wall_s']:.2f} s |" for x in mem]
    app = results.get("app")
    if app and "error" not in app:
        lines += ["", "## App in headless Chromium", "",
                  f"First page ready: median {_ms(app['first_page_ready_s']['median'])} (max "
                  f"{_ms(app['first_page_ready_s']['max'])}); next step with cached replay: median "
                  f"{_ms(app['next_step_cached_replay_s']['median'])} "
                  f"(max {_ms(app['next_step_cached_replay_s']['max'])})."]
        if app.get("stop_after_sigterm_s") is not None:
            lines += ["", f"The server stopped {_ms(app['stop_after_sigterm_s'])} after SIGTERM, with the browser "
                          "connected."]
    elif app:
        lines += ["", f"App timings failed: {app['error']}"]
    if len(results["corpora"]) > 1:
        lines += ["", "![Query cost vs corpus size](cost-vs-size.png)"]
    path = out / "RESULTS.md"
    path.write_text("\n".join(lines) + "\n")
    _plot(results, out)
    return path


def _plot(results: dict[str, Any], out: Path) -> None:
    """cost-vs-size.html: median latency of each query against corpus size (log-log)."""
    import plotly.graph_objects as go

    sizes = [int(n) for n in results["corpora"]]
    if len(sizes) < 2:
        return
    fig = go.Figure()
    for key, label in (("explore", "Explore"), ("fts", "full-text search"), ("open_trajectory", "open trajectory")):
        for variant in ("duckdb", "duckdb_word_index", "pandas", "python_scan", "pandas_filter"):
            ys = [c[key].get(variant, {}).get("median_s") for c in results["corpora"].values()]
            if all(y is None for y in ys):
                continue
            fig.add_scatter(x=sizes, y=ys, mode="lines+markers", name=f"{label}: {variant}")
    fig.update_layout(xaxis_type="log", yaxis_type="log", xaxis_title="trajectories", yaxis_title="median seconds",
                      title="Query cost vs corpus size", template="plotly_white", height=500, width=900)
    fig.write_html(out / "cost-vs-size.html", include_plotlyjs=True)
    _png(out / "cost-vs-size.html", out / "cost-vs-size.png")


def _png(html: Path, png: Path) -> None:
    """Render the plot to PNG in headless Chromium when it is available (a small file to commit)."""
    try:
        from playwright.sync_api import sync_playwright

        from horizonlens.bench.browser import CHROMIUM_ARGS

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 940, "height": 540})
            page.goto(html.resolve().as_uri())
            page.wait_for_selector(".js-plotly-plot", timeout=30_000)
            page.screenshot(path=str(png))
            browser.close()
    except Exception:  # noqa: BLE001 - the HTML plot is still there
        pass
