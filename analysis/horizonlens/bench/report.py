"""bench/RESULTS.md (and a cost-vs-size plot) from a results dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from horizonlens.bench.diff import report_lines as diff_lines
from horizonlens.bench.explore import report_lines as explore_lines
from horizonlens.bench.export import report_lines as export_lines
from horizonlens.bench.modes import report_lines as modes_lines
from horizonlens.bench.pages import report_lines as pages_lines
from horizonlens.bench.search import report_lines as search_lines
from horizonlens.bench.shape import report_lines as shape_lines
from horizonlens.bench.shape_app import report_lines as shape_app_lines
from horizonlens.figures.formatting import seconds

PEER_NAMES = (("horizonlens_ms", "Horizon Lens"), ("polars_ms", "Polars lazy"), ("duckdb_raw_ms", "DuckDB raw SQL"),
              ("pandas_ms", "pandas"))


def _corpora(results: dict[str, Any]) -> list[str]:
    """The corpora: size, derived data, memory."""
    lines = ["## Corpora", "", "| trajectories | steps | Parquet | search index | aggregates | "
             "peak RSS of the query layer |", "|---|---|---|---|---|---|"]
    for n, c in results["corpora"].items():
        idx, agg = c.get("index", {}), c.get("aggregates", {})
        lines.append(f"| {int(n):,} | {c['steps']:,} | {c['parquet_bytes'] / 2**20:,.0f} MB | "
                     f"{idx.get('bytes', 0) / 2**20:,.0f} MB, built in {idx.get('build_s', 0):,.0f} s | "
                     f"{agg.get('bytes', 0) / 2**20:,.1f} MB, built in {agg.get('build_s', 0):,.0f} s | "
                     f"{c['query_memory']['peak_rss_mb']:,.0f} MB |")
    return lines


def _peers(results: dict[str, Any]) -> list[str]:
    """The same queries through Horizon Lens and through its peers, with the ratio to the best peer."""
    peers = results.get("peers") or {}
    if not peers:
        return []
    lines = ["", "## Horizon Lens beside its peers", "",
             "Median milliseconds, each query checked to give the same answer in every variant. Peers: a Polars "
             "lazy scan with predicate pushdown, raw DuckDB SQL over the same Parquet (metadata cache on), pandas. "
             "Ratio: the best peer's time ÷ Horizon Lens's.", "",
             "| query | trajectories | " + " | ".join(label for _, label in PEER_NAMES) + " | best peer ÷ HL |",
             "|---|---|" + "---|" * len(PEER_NAMES) + "---|"]
    for query, rows in peers.items():
        for row in rows:
            times = [row.get(key) for key, _ in PEER_NAMES[1:] if row.get(key) is not None]
            ratio = f"{min(times) / row['horizonlens_ms']:,.1f}×" if times and row.get("horizonlens_ms") else "—"
            cells = " | ".join("—" if row.get(key) is None else f"{row[key]:,.1f}" for key, _ in PEER_NAMES)
            lines.append(f"| {query} | {int(row['trajectories']):,} | {cells} | {ratio} |")
    return lines


def write_report(results: dict[str, Any], out: Path) -> Path:
    """Write RESULTS.md (and the cost-vs-size chart) from a results dict; the path of RESULTS.md."""
    m = results["machine"]
    lines = [f"# Benchmark results ({results['scale']})", "",
             f"Command: `{results['command']}` · started {results['started_at']}", "",
             f"Machine: {m.get('cpu', '?')}, {m.get('cpus')} cores, {m.get('memory_gb', '?')} GiB RAM; Python "
             f"{m['python']}, DuckDB {m['duckdb']}, pyarrow {m['pyarrow']}, torch {m.get('torch', '-')}.", "",
             "Every figure is the median (p95) of repeated runs, measured beside its baseline in the same run "
             "(variants interleaved round-robin). Corpora are replicated from the 2,400 generated sample "
             "trajectories (see bench/README.md).", ""]
    lines += _corpora(results) + pages_lines(results.get("pages") or {}) + _peers(results) + search_lines(results)
    lines += explore_lines(results) + diff_lines(results)
    if results.get("export"):
        lines += export_lines(results["export"])
    r = results.get("replay")
    if r:
        t = r["timings"]
        lines += ["", "## Replay (bundled checkpoint, longest sample trajectory)", "",
                  f"{r['tokens']:,} tokens, chunk {r['chunk_size']}, {r['moe_layers']} MoE layers × "
                  f"{r['experts']} experts.", "",
                  "| what | median | ratio to one plain forward |", "|---|---|---|",
                  f"| plain forward (baseline) | {seconds(t['plain_forward']['median_s'])} | 1.00× |",
                  f"| forward with router capture | {seconds(t['captured_forward']['median_s'])} | "
                  f"{r['capture_overhead_ratio']:.3f}× |",
                  f"| chunked replay with cache | {seconds(t['chunked_replay']['median_s'])} | "
                  f"{r['chunked_vs_one_forward_ratio']:.2f}× |",
                  f"| re-forwarding each growing prefix ({r['prefix_points']} step boundaries) | "
                  f"{seconds(r['prefix_reforward']['median_s'])} | "
                  f"{r['prefix_reforward_vs_one_forward_ratio']:.1f}× |", "",
                  f"Whole trajectory replay (render + chunked forward + capture): {r['full_trajectory']['tokens']:,} "
                  f"tokens in {r['full_trajectory']['wall_s']:.2f} s = "
                  f"{r['full_trajectory']['tokens_per_s']:,.0f} tokens/s.", "",
                  f"Routing on disk (token tier and step tier): {r['routing_bytes_per_token_layer']:.2f} bytes per "
                  f"(token, layer) vs "
                  f"{r['raw_fp32_logits_bytes_per_token_layer']} bytes of raw fp32 router logits "
                  f"({r['raw_fp32_logits_bytes_per_token_layer'] / r['routing_bytes_per_token_layer']:.1f}× smaller)."]
    lines += modes_lines(results)
    lines += shape_lines(results)
    shape_app = results.get("shape_app")
    if shape_app and "error" not in shape_app:
        lines += ["", *shape_app_lines(shape_app)]
    elif shape_app:
        lines += ["", f"App timings at the shapes failed: {shape_app['error']}"]
    mem = results.get("replay_memory")
    if mem:
        lines += ["", "Peak RSS of replay by trajectory length (chunked, bounded):", "",
                  "| tokens replayed | peak RSS | wall |", "|---|---|---|"]
        lines += [f"| {x['tokens']:,} | {x['peak_rss_mb']:,.0f} MB | {x['wall_s']:.2f} s |" for x in mem]
    for problem in results.get("page_errors", []):
        lines += ["", f"Page timings failed at {problem}"]
    if len(results["corpora"]) > 1:
        lines += ["", "![Query cost vs corpus size](cost-vs-size.png)"]
    path = out / "RESULTS.md"
    path.write_text("\n".join(lines) + "\n")
    _plot(results, out)
    return path


def _plot(results: dict[str, Any], out: Path) -> None:
    """cost-vs-size.html (and .png): median latency of each query against corpus size."""
    from horizonlens.figures.bench import cost_vs_size

    fig = cost_vs_size(results["corpora"])
    if fig is None:
        return
    fig.write_html(out / "cost-vs-size.html", include_plotlyjs=True)
    _png(out / "cost-vs-size.html", out / "cost-vs-size.png")


def _png(html: Path, png: Path) -> None:
    """Render the plot to PNG in headless Chromium when it is available (a small file to commit)."""
    try:
        from horizonlens.bench.browser import chromium

        with chromium() as browser:
            page = browser.new_page(viewport={"width": 940, "height": 540})
            page.goto(html.resolve().as_uri())
            page.wait_for_selector(".js-plotly-plot", timeout=30_000)
            page.screenshot(path=str(png))
    except Exception:  # noqa: BLE001 - the HTML plot is still there
        pass
