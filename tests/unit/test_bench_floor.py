"""Pages beside the floor: the ratios, the rerun margins, the load breakdown and their report (hand-computed)."""

from __future__ import annotations

from typing import Any

import pytest

from horizonlens.bench.breakdown import median_breakdown, parts_of
from horizonlens.bench.pages import report_lines, with_floor


def _row(first: float | None, act: float | None) -> dict[str, Any]:
    return {"first_load_s": first, "interaction_s": act, "cold_s": first, "interaction": "click", "failures": []}


def test_every_page_is_read_against_the_floor_of_its_run() -> None:
    timed = with_floor({"floor": _row(0.8, 0.05), "explore": _row(2.0, 0.25), "sql": _row(1.0, None),
                        "broken": _row(None, None)})
    explore, sql, broken = timed["explore"], timed["sql"], timed["broken"]
    assert explore["floor_s"] == 0.8 and explore["ratio"] == pytest.approx(2.5)
    assert explore["floor_rerun_s"] == 0.05 and explore["over_floor_rerun_s"] == pytest.approx(0.20)
    assert sql["ratio"] == pytest.approx(1.25) and sql["over_floor_rerun_s"] is None
    assert broken["ratio"] is None and broken["over_floor_rerun_s"] is None
    assert "ratio" not in timed["floor"]  # the floor is the baseline, not a page
    assert "chart_ratio" not in explore  # no floor with a chart in this run


def test_pages_with_charts_are_also_read_against_the_floor_with_one_chart() -> None:
    timed = with_floor({"floor": _row(0.8, 0.05), "floor_chart": _row(1.6, 0.06), "explore": _row(2.0, 0.25)})
    explore = timed["explore"]
    assert explore["chart_floor_s"] == 1.6 and explore["chart_ratio"] == pytest.approx(1.25)
    assert explore["ratio"] == pytest.approx(2.5) and "ratio" not in timed["floor_chart"]


def test_the_cpu_ratio_adds_server_and_browser_cpu_of_a_load() -> None:
    floor = {**_row(0.8, 0.05), "breakdown": {"server_cpu_s": 0.1, "browser_cpu_s": 1.4}}
    page = {**_row(2.0, 0.25), "breakdown": {"server_cpu_s": 0.4, "browser_cpu_s": 2.6}}
    assert with_floor({"floor": floor, "explore": page})["explore"]["cpu_ratio"] == pytest.approx(2.0)


def test_no_floor_leaves_the_ratio_empty() -> None:
    timed = with_floor({"explore": _row(2.0, 0.25)})
    assert timed["explore"]["ratio"] is None and timed["explore"]["over_floor_rerun_s"] is None


def test_a_load_splits_into_document_session_runs_and_render() -> None:
    # the websocket opened at 600 ms; runs from 650 to 900 ms and a fragment from 950 to 1,000 ms; settled at 1.4 s
    probe = {"wsOpen": 600.0, "runs": [[650.0, 900.0], [950.0, 1000.0]], "wsBytes": 20480, "wsMessages": 12,
             "elements": 30, "widgets": 9, "figures": 2, "traces": 5, "figureBytes": 10240, "scriptBytes": 3 * 2**20}
    parts = parts_of(probe, 1.4)
    assert parts["document_s"] == pytest.approx(0.6) and parts["to_run_s"] == pytest.approx(0.05)
    assert parts["runs_s"] == pytest.approx(0.35) and parts["render_s"] == pytest.approx(0.4)
    assert parts["runs"] == 2 and parts["ws_kb"] == 20 and parts["figure_kb"] == 10 and parts["script_kb"] == 3072
    assert parts["document_s"] + parts["to_run_s"] + parts["runs_s"] + parts["render_s"] == pytest.approx(1.4)


def test_a_run_already_running_when_the_app_appeared_starts_at_the_websocket() -> None:
    """The app can mount already running: its run has an end but no start; the session part is then 0."""
    parts = parts_of({"wsOpen": 500.0, "runs": [[None, 800.0]]}, 1.0)
    assert parts["to_run_s"] == 0 and parts["runs_s"] == pytest.approx(0.3) and parts["render_s"] == pytest.approx(0.2)


def test_the_breakdown_of_a_page_is_the_median_of_its_loads() -> None:
    loads = [parts_of({"wsOpen": w, "runs": [[w + 10, w + 100]]}, t) for w, t in ((500, 1.0), (700, 2.0), (600, 1.2))]
    med = median_breakdown(loads)
    assert med is not None and med["total_s"] == 1.2 and med["document_s"] == pytest.approx(0.6)
    assert med["runs_s"] == pytest.approx(0.09)
    assert median_breakdown([]) is None


def test_the_report_shows_each_page_beside_the_floor() -> None:
    floor = {**_row(0.8, 0.05), "trajectories": 2400, "corpus": "bundled",
             "breakdown": parts_of({"wsOpen": 700.0, "runs": [[720.0, 760.0]]}, 0.8)}
    page = {**_row(2.0, 0.25), "trajectories": 2400, "corpus": "bundled",
            "breakdown": parts_of({"wsOpen": 700.0, "runs": [[720.0, 1200.0]]}, 2.0)}
    fast = {**_row(1.0, 0.1), "trajectories": 100_000}
    rows = with_floor({"floor": floor, "floor_chart": _row(1.6, 0.06), "explore": page})
    text = "\n".join(report_lines({"floor": [rows["floor"]], "explore": [rows["explore"]],
                                   "sql": [with_floor({"floor": _row(0.8, 0.05), "sql": fast})["sql"]]}))
    assert "| explore | 2,400 (bundled) | 2.00 s | 800.0 ms | 2.50× | 1.25× | — |" in text
    assert "| 250.0 ms | 50.0 ms | 200.0 ms | missed |" in text  # 2.5 floors: over the 1.5 goal
    assert "| sql | 100,000 | 1.00 s | 800.0 ms | 1.25× | — | — |" in text and text.count("| met |") == 1
    assert "| explore | 2,400 (bundled) | 2.00 s | 700.0 ms | 20.0 ms | 480.0 ms | 800.0 ms |" in text
    assert "| floor | 2,400 (bundled) | 800.0 ms |" in text  # the floor's own breakdown, for comparison


def test_the_shape_report_shows_the_real_horizon_beside_the_floor() -> None:
    from horizonlens.bench.shape_app import report_lines as shape_lines
    from horizonlens.bench.shape_app import with_ratios

    def per(open_s: float, next_s: float) -> dict[str, Any]:
        stats = {a: {"median": s, "server_cpu_median": 0.1, "browser_cpu_median": 0.2}
                 for a, s in (("open_trajectory_s", open_s), ("next_step_s", next_s), ("routing_page_s", 0.4),
                              ("routing_page_revisit_s", 0.3))}
        return {**stats, "floor_s": {"median": 1.0}, "open_vs_floor": open_s / 1.0}

    base, far = per(2.0, 0.3), per(3.0, 0.5)
    lines = shape_lines({"trajectory": "t9k", "tokens": 9020, "baseline": base,
                         "shapes": with_ratios({"agents-a1": per(2.2, 0.33)}, base),
                         "long": {"trajectory": "t44k", "tokens": 44027, "steps": 214, "baseline": far,
                                  "shapes": with_ratios({"agents-a1": per(4.5, 1.0)}, far)}})
    rows = [line for line in lines if line.startswith("| agents-a1 |")]
    assert rows[0].startswith("| agents-a1 | `t9k` (9,020 tokens) | 0.33 (1.10×);")
    assert rows[1].startswith("| agents-a1 | `t44k` (44,027 tokens, 214 steps; opened at step 107) | 1.00 (2.00×);")
    assert rows[1].endswith("| 4.50 (1.50×); cpu 0.10 + 0.20 | 4.50× (1.00 s) |")
