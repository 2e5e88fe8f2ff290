"""Run sets compared on their common tasks: every statistic against an independent reference, planted effects."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from horizonlens.cli import app
from horizonlens.errors import SqlError, StoreError
from horizonlens.labels.annotations import Label, add_labels
from horizonlens.metrics.compare import align
from horizonlens.metrics.runsets import MIN_TASKS, compare
from horizonlens.query.runsets import RunSet, check_predicate
from horizonlens.query.store import open_store
from tests.support.runsets import paired_corpus

OLD, NEW = RunSet.of_predicate("agent = 'old'"), RunSet.of_facet("agent", "new")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return paired_corpus(tmp_path_factory.mktemp("runsets") / "c")


@pytest.fixture(scope="module")
def store(corpus: Path):  # noqa: ANN201
    return open_store(corpus)


@pytest.fixture(scope="module")
def result(store):  # noqa: ANN001, ANN201
    return compare(store, OLD, NEW, by="domain", n_boot=4000)


@pytest.fixture(scope="module")
def runs(corpus: Path) -> pd.DataFrame:
    """The corpus's runs read with pandas, independently of the store."""
    return pd.read_parquet(corpus / "trajectories")


def _per_task(runs: pd.DataFrame) -> pd.DataFrame:
    """Trials, successes and first-trial outcome per (task, agent), by plain pandas."""
    runs = runs.assign(success=(runs["outcome"] == "success").astype(int)).sort_values(["task_id", "trial"])
    g = runs.groupby(["task_id", "agent"])
    per = pd.DataFrame({"n": g.size(), "c": g["success"].sum(), "first": g["success"].first()}).unstack("agent")
    return per.dropna()  # tasks run by both agents


# --- the predicate gate -------------------------------------------------------------------------------------
@pytest.mark.parametrize("predicate", [
    "1=1) UNION SELECT count(*) FROM steps WHERE (1=1",  # escapes its parentheses
    "trajectory_id IN (SELECT trajectory_id FROM steps)",  # a subquery
    "true; DROP VIEW trajectories", "agent = 'x' -- comment", "agent = ?", "count(*) > 1",
    "row_number() OVER () = 1", "n_steps", "nope = 1", "read_text('/etc/passwd') IS NULL", "1=1) GROUP BY (agent",
    "(" * 100 + "true" + ")" * 100, "x" * 200_000, "", "\x00", "* = 1",
])
def test_hostile_predicates_are_refused(store, predicate: str) -> None:  # noqa: ANN001
    with pytest.raises(SqlError):
        check_predicate(store, predicate)


def test_read_only_boolean_predicates_pass(store) -> None:  # noqa: ANN001
    for ok in ("agent = 'old'", "n_steps > 10 AND domain <> 'search'", "regexp_matches(task, 'task-00[0-9]')",
               "list_contains(labels, 'x')", "NULL", "trial IN (0, 1) OR outcome = 'failure'"):
        assert check_predicate(store, f"  {ok} ") == ok
    with pytest.raises(SqlError):
        compare(store, RunSet.of_predicate("1=1) UNION SELECT 1 WHERE (1=1"), NEW)
    with pytest.raises(StoreError, match="cannot compare by"):
        compare(store, OLD, NEW, by="n_steps")


# --- the statistics against references ----------------------------------------------------------------------
def test_counts_and_pass_rate(result, runs: pd.DataFrame) -> None:  # noqa: ANN001
    per = _per_task(runs)
    s = result.summary
    assert s["common_tasks"] == len(per) == 64
    assert s["a"]["n_runs"] == (runs["agent"] == "old").sum() and s["a"]["n_tasks"] == 68
    assert s["b"]["n_runs"] == (runs["agent"] == "new").sum() and s["b"]["n_tasks"] == 64
    a = float((per[("c", "old")] / per[("n", "old")]).mean())
    b = float((per[("c", "new")] / per[("n", "new")]).mean())
    assert s["pass_rate"]["a"] == pytest.approx(a) and s["pass_rate"]["b"] == pytest.approx(b)
    assert s["pass_rate"]["diff"] == pytest.approx(b - a)
    assert 0.15 < s["pass_rate"]["diff"] < 0.45  # planted +0.30
    lo, hi = s["pass_rate"]["ci"]
    assert 0 < lo < b - a < hi  # the planted effect is detected


def test_bootstrap_interval_matches_a_plain_bootstrap(result, runs: pd.DataFrame) -> None:  # noqa: ANN001
    per = _per_task(runs)
    delta = (per[("c", "new")] / per[("n", "new")] - per[("c", "old")] / per[("n", "old")]).to_numpy()
    rng = np.random.default_rng(12345)
    means = [delta[rng.integers(0, len(delta), len(delta))].mean() for _ in range(4000)]
    lo, hi = np.percentile(means, [2.5, 97.5])
    got = result.summary["pass_rate"]["ci"]
    assert got[0] == pytest.approx(lo, abs=0.012) and got[1] == pytest.approx(hi, abs=0.012)


def test_mcnemar_equals_scipy_binomtest(result, runs: pd.DataFrame) -> None:  # noqa: ANN001
    from scipy.stats import binomtest

    per = _per_task(runs)
    a_only = int(((per[("first", "old")] == 1) & (per[("first", "new")] == 0)).sum())
    b_only = int(((per[("first", "old")] == 0) & (per[("first", "new")] == 1)).sum())
    m = result.summary["mcnemar"]
    assert (m["a_only"], m["b_only"]) == (a_only, b_only) and b_only > a_only
    assert m["p_value"] == pytest.approx(binomtest(b_only, a_only + b_only, 0.5).pvalue, rel=1e-9)


def test_pass_k_uses_every_trial(result, runs: pd.DataFrame) -> None:  # noqa: ANN001
    per = _per_task(runs)
    rows = result.summary["pass_k"]
    assert [r["k"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        k = r["k"]
        want = {agent: np.mean([math.comb(int(c), k) / math.comb(int(n), k)
                                for n, c in zip(per[("n", agent)], per[("c", agent)], strict=True)])
                for agent in ("old", "new")}
        assert r["a"] == pytest.approx(want["old"]) and r["b"] == pytest.approx(want["new"])
        assert r["diff"] == pytest.approx(want["new"] - want["old"]) and r["ci"][0] < r["diff"] < r["ci"][1]


def test_logrank_equals_lifelines(result, runs: pd.DataFrame) -> None:  # noqa: ANN001
    from lifelines.statistics import logrank_test

    both = runs[runs["task_id"].isin(_per_task(runs).index)]
    t = np.where(both["first_failed_step"].isna(), both["n_steps"], both["first_failed_step"] + 1)
    event = both["first_failed_step"].notna().to_numpy()
    old = (both["agent"] == "old").to_numpy()
    ref = logrank_test(t[old], t[~old], event[old], event[~old])
    got = result.summary["logrank"]
    assert got["statistic"] == pytest.approx(ref.test_statistic, rel=1e-9)
    assert got["p_value"] == pytest.approx(ref.p_value, rel=1e-6)
    assert got["p_value"] < 0.01  # planted: "new" fails its first check later
    km = result.km()
    assert set(km["side"]) == {"a", "b"}


def test_flipped_tasks_and_their_best_pair(result, store, runs: pd.DataFrame) -> None:  # noqa: ANN001
    per = _per_task(runs)
    rate_a, rate_b = per[("c", "old")] / per[("n", "old")], per[("c", "new")] / per[("n", "new")]
    want = set(per.index[((rate_a > 0.5) & (rate_b < 0.5)) | ((rate_a < 0.5) & (rate_b > 0.5))])
    flipped = {f["task_id"]: f for f in result.summary["flipped"]}
    assert set(flipped) == want and len(want) >= 5
    for tid, f in flipped.items():
        winner = "new" if rate_b[tid] > rate_a[tid] else "old"
        assert f["winner"] == ("b" if winner == "new" else "a")
        mine = runs[runs["task_id"] == tid]
        good = mine[(mine["agent"] == winner) & (mine["outcome"] == "success")]["trajectory_id"]
        bad = mine[(mine["agent"] != winner) & (mine["outcome"] == "failure")]["trajectory_id"]
        # brute force with the Compare page's own alignment: the pair that agrees longest
        parts = {(x, y): align(store, x, y)[1] for x, y in itertools.product(good, bad)}
        best = max(v if v is not None else math.inf for v in parts.values())
        pair = (f["b_trajectory"], f["a_trajectory"]) if winner == "new" else (f["a_trajectory"], f["b_trajectory"])
        assert (parts[pair] if parts[pair] is not None else math.inf) == best
        assert f["first_divergence_step"] == parts[pair]
        assert (f["a_successes"], f["a_trials"]) == (per.loc[tid, ("c", "old")], per.loc[tid, ("n", "old")])


def test_one_tasks_best_pair_is_the_one_the_full_comparison_finds(result, store) -> None:  # noqa: ANN001
    """The Run sets tab compares without the pairs and asks for the opened task's pair alone: the same pair."""
    from horizonlens.metrics.runsets import best_pair

    light = compare(store, OLD, NEW, by="domain", n_boot=100, divergence=False)
    assert all(f["first_divergence_step"] is None for f in light.summary["flipped"])
    assert [f["task_id"] for f in light.summary["flipped"]] == [f["task_id"] for f in result.summary["flipped"]]
    for f in result.summary["flipped"]:
        pair = best_pair(store, OLD, NEW, f["task_id"], f["winner"])
        assert (pair["a_trajectory"], pair["b_trajectory"], pair["first_divergence_step"]) == (
            f["a_trajectory"], f["b_trajectory"], f["first_divergence_step"])


def test_by_facet_with_holm_and_too_few_tasks(result) -> None:  # noqa: ANN001
    from statsmodels.stats.multitest import multipletests

    groups = {g["value"]: g for g in result.summary["by"]}
    assert set(groups) == {"search", "engineering", "science", "general"}
    small = groups["general"]
    assert small["common_tasks"] == 5 < MIN_TASKS
    assert small["mcnemar"]["p_value"] is None and small["logrank"]["p_value"] is None
    assert "too few" in small["note"] and small["pass_rate"]["a"] is not None
    tested = [g for g in groups.values() if g["mcnemar"]["p_value"] is not None]
    for test in ("mcnemar", "logrank"):
        ref = multipletests([g[test]["p_value"] for g in tested], method="holm")[1]
        assert [g[test]["p_holm"] for g in tested] == pytest.approx(list(ref))
        assert small[test]["p_holm"] is None
    assert sum(g["common_tasks"] for g in groups.values()) == result.summary["common_tasks"]


def test_by_horizon_bins_cover_every_task(store, result) -> None:  # noqa: ANN001
    bins = result.summary["by_horizon"]
    assert sum(b["tasks"] for b in bins) == result.summary["common_tasks"]
    assert all(b["tasks"] >= MIN_TASKS for b in bins) and bins == sorted(bins, key=lambda b: b["steps_from"])
    by = compare(store, OLD, NEW, by="horizon", n_boot=200)
    assert [g["value"] for g in by.summary["by"]] == [b["bin"] for b in bins]
    assert sum(g["logrank"]["a_runs"] for g in by.summary["by"]) == result.summary["logrank"]["a_runs"]


def test_no_common_task_says_so(store) -> None:  # noqa: ANN001
    out = compare(store, OLD, RunSet.of_predicate("agent = 'nobody'"))
    s = out.summary
    assert s["common_tasks"] == 0 and "share no task" in s["note"]
    assert s["mcnemar"]["p_value"] is None and s["logrank"]["p_value"] is None and s["flipped"] == []
    assert s["pass_rate"]["diff"] is None and s["b"]["n_runs"] == 0


def test_label_run_sets(corpus: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(corpus, tmp_path / "c"))
    ids = [f"task-{t:03d}-old-t0" for t in range(12)]
    add_labels(copy, [Label(trajectory_id=t, label="reviewed", category="note") for t in ids])
    store = open_store(copy)
    by_predicate = compare(store, RunSet.of_predicate("list_contains(labels, 'reviewed')"), NEW, n_boot=100)
    by_facet = compare(store, RunSet.of_facet("label", "reviewed"), NEW, n_boot=100)
    assert by_predicate.summary["a"]["n_runs"] == by_facet.summary["a"]["n_runs"] == 12
    assert by_predicate.summary["common_tasks"] == by_facet.summary["common_tasks"] == 12


def _script_sources(page: str) -> list[str]:
    """The src of every <script> tag (script bodies are not parsed as HTML, so strings inside them do not count)."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Scripts(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.extend(v or "" for k, v in attrs if tag == "script" and k == "src")

    Scripts().feed(page)
    return found


# --- the command ------------------------------------------------------------------------------------------
def test_cli_diff_json_and_html(corpus: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    html = tmp_path / "report.html"
    out = runner.invoke(app, ["diff", str(corpus), "--a", "agent = 'old'", "--b", "agent = 'new'", "--by", "domain",
                              "--k", "3", "--json", "--html", str(html)])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert {"common_tasks", "a", "b", "pass_rate", "mcnemar", "pass_k", "logrank", "flipped", "by"} <= set(data)
    assert {"n_runs", "n_tasks"} <= set(data["a"]) and [r["k"] for r in data["pass_k"]] == [1, 2, 3]
    assert {"a", "b", "diff", "ci"} <= set(data["pass_rate"]) and {"a_only", "b_only", "p_value"} <= set(
        data["mcnemar"])
    assert {"statistic", "p_value"} <= set(data["logrank"])
    assert set(data["flipped"][0]) >= {"task_id", "a_successes", "a_trials", "b_successes", "b_trials",
                                       "first_divergence_step"}
    page = html.read_text()
    assert _script_sources(page) == [] and "Plotly.newPlot" in page  # self-contained: Plotly inlined, no network
    assert data["flipped"][0]["task_id"] in page
    table = runner.invoke(app, ["diff", str(corpus), "--a", "agent = 'old'", "--b", "agent = 'new'"])
    assert table.exit_code == 0 and "McNemar" in table.output and "flipped" in table.output
    light_html = tmp_path / "light.html"
    light = runner.invoke(app, ["diff", str(corpus), "--a", "agent = 'old'", "--b", "agent = 'new'", "--by", "domain",
                                "--k", "3", "--json", "--no-pairs", "--html", str(light_html)])
    assert light.exit_code == 0, light.output
    quick = json.loads(light.stdout)
    assert [f["task_id"] for f in quick["flipped"]] == [f["task_id"] for f in data["flipped"]]
    assert all(f["first_divergence_step"] is None for f in quick["flipped"])
    assert data["settings"]["pairs"] is True and quick["settings"]["pairs"] is False  # which null it is
    assert "Made with --no-pairs" in light_html.read_text() and "Made with --no-pairs" not in page
    assert quick["pass_rate"] == data["pass_rate"] and quick["mcnemar"] == data["mcnemar"]
    bad = runner.invoke(app, ["diff", str(corpus), "--a", "1; DROP VIEW steps", "--b", "agent = 'new'"])
    assert bad.exit_code == 1 and "error:" in bad.output and "Traceback" not in bad.output


# --- the bundled sample: its planted line-up shows in the comparison ---------------------------------------
def test_sample_planted_effects_are_recovered() -> None:
    from tests.support.corpora import SAMPLE_CORPUS

    root = SAMPLE_CORPUS
    store = open_store(root)
    early, late = RunSet.of_facet("agent", "a1-student-ckpt-2k"), RunSet.of_facet("agent", "a1-student-ckpt-4k")
    s = compare(store, early, late, by="domain").summary
    assert s["common_tasks"] == 200 and s["pass_rate"]["ci"][0] > 0  # the later checkpoint is better overall
    engineering = next(g for g in s["by"] if g["value"] == "engineering")
    assert engineering["pass_rate"]["ci"][1] < 0  # ...but lost the engineering skill it was planted to lose
    bins = s["by_horizon"]
    assert bins[-1]["ci"][0] > 0 and bins[-1]["diff"] > bins[0]["diff"] + 0.05  # its lead comes on long tasks
    teachers = compare(store, RunSet.of_predicate("agent LIKE '%-teacher'"), late, by="domain").summary
    worst = min(teachers["by"], key=lambda g: g["pass_rate"]["diff"])
    assert worst["value"] == "engineering" and worst["pass_rate"]["ci"][1] < 0


def test_p_values_read_as_statements() -> None:
    """The statistics table says "p < 0.0001", never "p = < 0.0001" (seen at 10^6 runs)."""
    from horizonlens.figures.runsets import _p_is

    assert (_p_is(3e-9), _p_is(0.07304), _p_is(None)) == ("p < 0.0001", "p = 0.0730", "—")


def test_the_statistics_table_of_a_strong_difference(result) -> None:  # noqa: ANN001
    from horizonlens.figures.runsets import stat_rows

    rows = stat_rows(result.summary)
    shown = rows.loc[rows["statistic"].str.startswith("log-rank"), "95% CI / p"].iloc[0]
    assert shown == "p < 0.0001"  # planted: p ~ 1e-15
