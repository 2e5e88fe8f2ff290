"""The Failure modes, Tools and Routing pages on the bundled corpus: what they say matches the metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from horizonlens.metrics import modes as mmodes
from horizonlens.metrics import tool_use
from horizonlens.metrics.replays import replayed_trajectories
from horizonlens.query.store import open_store
from tests.support.app import make_app
from tests.support.corpora import REPO, SAMPLE_CORPUS


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled corpus with its replays as if chosen by hand (its recorded random sample removed)."""
    return _hand_chosen(Path(shutil.copytree(SAMPLE_CORPUS,
                                             tmp_path_factory.mktemp("insight") / "corpus")))


def _hand_chosen(corpus: Path) -> Path:
    """Remove the record of the replays' random sample: every replayed run then counts, flagged as chosen."""
    for record in (corpus / "replays").glob("*/selection.json"):
        record.unlink()
    return corpus


def _titles(at) -> list[str]:  # noqa: ANN001
    return [(json.loads(c.proto.spec)["layout"].get("title") or {}).get("text") or "" for c in at.get("plotly_chart")]


def test_failure_modes_page(monkeypatch, corpus: Path) -> None:
    at = make_app(monkeypatch, corpus, page="failure_modes")
    at.run()
    assert not at.exception, at.exception
    result = mmodes.find_modes(open_store(corpus))  # kept by the page's run: read back, not recomputed
    caption = at.caption[0].value
    assert f"{result.note['failed_steps']:,} failed steps" in caption and "random sample of 5,000" in caption
    assert not _titles(at)  # the first paint draws no chart: the table's bars are the modes' sizes
    table = at.dataframe[0].value
    assert table["size"].tolist() == result.modes["size"].tolist()
    assert table["label"].tolist() == result.modes["label"].tolist()
    assert "Where each mode occurs: share of its failed steps by domain" not in _titles(at)  # a closed tab: not run
    at.selectbox(key="modes_chosen").select_index(1).run()
    chosen = at.selectbox(key="modes_chosen").value
    at.session_state["modes_tab"] = "Where they occur"
    at.run()
    assert not at.exception, at.exception
    assert {"Where each mode occurs: share of its failed steps by domain",
            "Where along the horizon each mode happens (step ÷ run length)"} <= set(_titles(at))
    at.session_state["modes_tab"] = "Routing signature"
    at.run()
    assert not at.exception, at.exception
    split = [d.value for d in at.dataframe if list(d.value.columns[:1]) == ["mode"]]
    if open_store(corpus).replay_checkpoints:
        assert split or any(i.value.startswith("None of these failed steps") for i in at.info)
    else:
        assert any(i.value.startswith("Replay trajectories through a checkpoint") for i in at.info)
    at.session_state["modes_tab"] = "Examples"  # back: the mode chosen before is still chosen
    at.run()
    assert at.selectbox(key="modes_chosen").value == chosen != result.modes["mode"].iloc[0]
    at.text_input(key="modes_where").input("t.domain = 'nothing'").run()
    assert any("no failed steps" in i.value for i in at.info)


def test_tools_page(monkeypatch, corpus: Path) -> None:
    at = make_app(monkeypatch, corpus, page="tools")
    at.run()
    assert not at.exception, at.exception
    s = tool_use.tool_use(open_store(corpus))["summary"]
    values = {m.label: m.value for m in at.metric}
    assert values["repeated calls"] == f"{s['repeated_calls']:,}"
    assert values["runs with loops"] == f"{s['runs_with_loops']:,}"


def test_routing_probe_tab_discloses_the_runs_it_uses(monkeypatch, corpus: Path) -> None:
    at = make_app(monkeypatch, corpus, REPO / "sample_data" / "checkpoint", page="routing")
    at.session_state["routing_tab"] = "Probe, map and health"
    at.run()
    assert not at.exception, at.exception
    assert any("not drawn at random" in w.value for w in at.warning)
    assert any("Routes by teacher" in m.value for m in at.markdown)
    titles = _titles(at)
    assert any(t.startswith("Does routing predict teacher") for t in titles)
    assert any(t.startswith("Replayed steps by routing signature") for t in titles)


def _record_sample(corpus: Path, n: int) -> list[str]:
    """Record a stratified random sample of n of the corpus's replayed runs, as `replay --sample` does."""
    from horizonlens.metrics.replay_set import selection_record, stratified_sample
    from horizonlens.metrics.replays import replayed_trajectories
    from horizonlens.replays.cache import ReplayCache

    store = open_store(corpus)
    ckpt = store.replay_checkpoints[0]
    replayed = replayed_trajectories(store, ckpt)
    rows = store.query("SELECT trajectory_id, domain, outcome FROM trajectories WHERE list_contains(?, trajectory_id)",
                       [replayed]).to_pandas()
    ids = stratified_sample(rows, n, seed=4)
    ReplayCache(corpus, ckpt).write_selection(selection_record(ids, n, 4, len(rows)))
    return ids


def _early_warning_table(at):  # noqa: ANN001, ANN202
    return next(d.value for d in at.dataframe if "signal" in d.value.columns and "auroc" in d.value.columns)


def test_the_bundled_replays_are_a_recorded_random_sample(monkeypatch, tmp_path: Path) -> None:
    corpus = Path(shutil.copytree(SAMPLE_CORPUS, tmp_path / "corpus"))
    at = make_app(monkeypatch, corpus, REPO / "sample_data" / "checkpoint", page="compounding")
    at.session_state["comp_tab"] = "Early warning"  # only the open tab runs
    at.run()
    assert not at.exception, at.exception
    said = [c.value for c in at.caption if c.value.startswith("Runs used:")]
    assert said and "60 runs of the stratified random sample (seed 0" in said[0]
    assert not [w for w in at.warning if w.value.startswith("Runs used:")]


def test_early_warning_says_which_replayed_runs_it_uses(monkeypatch, tmp_path: Path) -> None:
    corpus = _hand_chosen(Path(shutil.copytree(SAMPLE_CORPUS, tmp_path / "corpus")))
    checkpoint = REPO / "sample_data" / "checkpoint"
    at = make_app(monkeypatch, corpus, checkpoint, page="compounding")
    at.session_state["comp_tab"] = "Early warning"  # only the open tab runs
    at.run()
    assert not at.exception, at.exception
    store = open_store(corpus)
    n_replayed = len(replayed_trajectories(store, store.replay_checkpoints[0]))
    flagged = [w.value for w in at.warning if w.value.startswith("Runs used:")]
    assert flagged and f"All {n_replayed:,} replayed runs" in flagged[0] and "not drawn at random" in flagged[0]
    everyone = _early_warning_table(at)

    ids = _record_sample(corpus, 24)
    at = make_app(monkeypatch, corpus, checkpoint, page="compounding")
    at.session_state["comp_tab"] = "Early warning"  # only the open tab runs
    at.run()
    assert not at.exception, at.exception
    said = [c.value for c in at.caption if c.value.startswith("Runs used:")]
    assert said and "24 runs of the stratified random sample (seed 4" in said[0]
    assert not [w for w in at.warning if w.value.startswith("Runs used:")]
    sampled = _early_warning_table(at)
    assert sampled["trajectories"].max() <= len(ids) < everyone["trajectories"].max()
    at.toggle(key="comp_use_sample").set_value(False).run()  # every replayed run again, flagged
    assert any(w.value.startswith("Runs used: All") for w in at.warning)
    assert _early_warning_table(at)["trajectories"].max() == everyone["trajectories"].max()


def test_routing_corpus_tab_uses_the_sample_everywhere(monkeypatch, tmp_path: Path) -> None:
    corpus = Path(shutil.copytree(SAMPLE_CORPUS, tmp_path / "corpus"))
    _record_sample(corpus, 24)
    at = make_app(monkeypatch, corpus, REPO / "sample_data" / "checkpoint", page="routing")
    at.session_state["routing_tab"] = "Replayed corpus"
    at.run()
    assert not at.exception, at.exception
    assert any(c.value.startswith("Runs used: 24 runs of the stratified random sample") for c in at.caption)
    titles = _titles(at)
    assert any(t.startswith("Expert load by teacher") for t in titles)
    assert any(t.startswith("Expert load by domain") for t in titles)
