"""The Compare page's Run sets tab in AppTest: pick A and B, the statistics, the grid, a flipped task's pair."""

from __future__ import annotations

from pathlib import Path

import pytest

from horizonlens.app import runsets_panel
from horizonlens.metrics.runsets import compare
from horizonlens.query.runsets import RunSet
from horizonlens.query.store import open_store
from tests.support.app import assert_inert, make_app, rendered_markdown, shown
from tests.support.runsets import paired_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return paired_corpus(tmp_path_factory.mktemp("runsets_app") / "c")


def _run_sets(monkeypatch, corpus: Path):  # noqa: ANN001, ANN202
    at = make_app(monkeypatch, corpus, page="compare", cmp_tab="Run sets")
    at.run()
    assert not at.exception, at.exception
    return at


def _frames(at) -> dict:  # noqa: ANN001
    return {d.proto.id: d.value for d in at.dataframe}


def test_run_sets_tab_shows_the_paired_statistics(monkeypatch, corpus: Path) -> None:
    at = _run_sets(monkeypatch, corpus)
    assert at.selectbox(key="rs_a_facet").value == "agent" and at.selectbox(key="rs_b_facet").value == "agent"
    a, b = at.selectbox(key="rs_a_value_agent").value, at.selectbox(key="rs_b_value_agent").value
    assert {a, b} == {"new", "old"}  # two different agents out of the box
    want = compare(open_store(corpus), RunSet.of_facet("agent", a), RunSet.of_facet("agent", b)).summary
    stats = at.table[0].value.map(shown).rename(columns=shown)  # cells are escaped: read them as shown
    rate = stats[stats["statistic"] == "pass rate"].iloc[0]
    assert rate["B − A"] == f"{want['pass_rate']['diff']:+.1%}" and all(stats["how to read it"].str.len() > 0)
    assert "McNemar (first trials)" in set(stats["statistic"]) and any(stats["statistic"].str.startswith("log-rank"))
    grid = next(df for df in at.dataframe if "flipped" in df.value.columns).value
    assert len(grid) == len(want["flipped"]) > 0  # "Flipped only" is on when tasks flipped
    at.toggle(key="rs_flipped_only").set_value(False).run()
    grid = next(df for df in at.dataframe if "flipped" in df.value.columns).value
    assert len(grid) == want["common_tasks"] == 64
    assert not at.get("plotly_chart")  # the first look draws no chart: the grid's tab is open
    full = grid
    at.session_state["rs_view"] = runsets_panel.ALONG_THE_HORIZON
    at.run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 2  # B − A along the horizon, survival
    at.session_state["rs_view"] = runsets_panel.PASS_K
    at.run()
    assert len(at.get("plotly_chart")) == 1
    at.session_state["rs_view"] = runsets_panel.TASKS
    monkeypatch.setattr(runsets_panel, "GRID_ROWS", 10)  # a large comparison: the grid keeps the widest gaps
    at.run()
    grid = next(df for df in at.dataframe if "flipped" in df.value.columns).value
    assert len(grid) == 10 and grid["B − A"].abs().min() == full["B − A"].abs().nlargest(10).min()
    assert any("Showing the 10 of 64 tasks" in c.value for c in at.caption)


def test_run_sets_are_kept_after_a_look_at_two_trajectories(monkeypatch, corpus: Path) -> None:
    """Opening a flipped pair leaves the tab; coming back shows the same run sets, not the defaults."""
    at = _run_sets(monkeypatch, corpus)
    at.selectbox(key="rs_b_facet").select("domain").run()
    b_domain = at.selectbox(key="rs_b_value_domain").value
    at.selectbox(key="rs_by_facet").select("domain").run()
    at.session_state["cmp_tab"] = runsets_panel.TWO_TRAJECTORIES
    at.run()
    assert not at.exception, at.exception
    at.session_state["cmp_tab"] = runsets_panel.RUN_SETS
    at.run()
    assert at.selectbox(key="rs_b_facet").value == "domain" and at.selectbox(key="rs_by_facet").value == "domain"
    assert at.selectbox(key="rs_b_value_domain").value == b_domain


def test_by_facet_and_too_few_tasks(monkeypatch, corpus: Path) -> None:
    at = _run_sets(monkeypatch, corpus)
    at.selectbox(key="rs_by_facet").select("domain").run()
    assert not at.exception, at.exception
    facets = next(df for df in at.dataframe if "McNemar p (Holm)" in df.value.columns).value
    general = facets[facets["value"] == "general"].iloc[0]
    assert "too few" in general["note"] and general["McNemar p (Holm)"] == "—"


def test_predicates_no_common_task_and_refusals(monkeypatch, corpus: Path) -> None:
    at = _run_sets(monkeypatch, corpus)
    at.radio(key="rs_b_how").set_value("SQL predicate").run()
    assert any("Pick run set A and run set B" in i.value for i in at.info)  # an empty predicate: nothing yet
    at.text_input(key="rs_b_pred").set_value("agent = 'nobody'").run()
    assert any("share no task" in w.value for w in at.warning)
    at.text_input(key="rs_b_pred").set_value("1=1) UNION SELECT count(*) FROM steps WHERE (1=1").run()
    assert not at.exception and at.error and "one boolean expression" in at.error[0].value
    at.text_input(key="rs_b_pred").set_value("agent = 'new' AND n_steps > 5").run()
    assert not at.exception and not at.error and not at.warning


def test_a_flipped_task_opens_its_pair_at_the_divergence(monkeypatch, corpus: Path) -> None:
    at = _run_sets(monkeypatch, corpus)
    flip = next(f for f in compare(open_store(corpus), RunSet.of_facet("agent", at.selectbox(
        key="rs_a_value_agent").value), RunSet.of_facet("agent", at.selectbox(key="rs_b_value_agent").value)
    ).summary["flipped"] if f["first_divergence_step"])
    at.session_state["rs_open_pair"] = flip  # what selecting the task's row in the grid asks for
    at.run()
    assert not at.exception, at.exception
    assert at.text_input(key="cmp_a").value == flip["a_trajectory"]
    assert at.text_input(key="cmp_b").value == flip["b_trajectory"]
    assert at.toggle(key="cmp_from_divergence").value is True
    assert any(f"first diverge at step {flip['first_divergence_step']}" in w.value for w in at.warning)
    steps = next(df for df in at.dataframe if "action_a" in df.value.columns).value
    assert steps["step"].min() == flip["first_divergence_step"] - 1  # one step of context before the parting


def test_hostile_names_in_run_sets_are_inert(monkeypatch, hostile_corpus: Path) -> None:
    at = make_app(monkeypatch, hostile_corpus, page="compare", cmp_tab="Run sets")
    at.run()
    assert not at.exception, at.exception
    assert_inert(rendered_markdown(at))
