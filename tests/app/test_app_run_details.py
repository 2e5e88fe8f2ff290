"""The Trajectory page's Run details: where the outcome comes from, expected actions beside the calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from horizonlens.ingest import import_paths
from tests.support.app import assert_inert, make_app, page_markdown, rendered_markdown, shown
from tests.support.corpora import MARKDOWN_IMAGE
from tests.support.tau import wrong_cancellation


@pytest.fixture()
def tau_corpus(tmp_path: Path) -> Path:
    src = tmp_path / "tau.json"
    src.write_text(json.dumps([wrong_cancellation()]))
    import_paths([src], tmp_path / "corpus")
    return tmp_path / "corpus"


def test_failed_run_without_failed_checks_says_where_its_outcome_comes_from(monkeypatch, tau_corpus: Path) -> None:
    at = make_app(monkeypatch, tau_corpus, page="trajectory", trajectory="tau-bench:3:0", step="0")
    at.run()
    assert not at.exception, at.exception
    assert not at.dataframe  # the closed panel sends nothing (its content runs once it is opened)
    at.session_state["run_details_open"] = True
    at.run()
    warning = shown(at.warning[0].value)
    assert "This run failed, yet none of its 2 checks failed" in warning
    assert "r_actions = 0: the database after the run differs" in warning
    md = shown(page_markdown(at))
    assert "First divergence from the expected actions** at step 3: wrong arguments of **cancel_reservation**: " \
           'reservation_id: expected "A", given "B"' in md
    table = at.dataframe(key="run_alignment_tau-bench:3:0").value
    rows = table[["status", "step", "tool", "differences"]].values.tolist()
    assert rows == [["matched", "2", "get_user", ""],
                    ["wrong arguments", "3", "cancel_reservation", 'reservation_id: expected "A", given "B"']]
    assert table["expected"].tolist() == ['{"id": "u1"}', '{"reservation_id": "A"}']
    assert table["given"].tolist() == ['{"id": "u1"}', '{"reservation_id": "B"}']
    # the link goes to the step of the first divergence
    at.button(key="run_first_divergence").click().run()
    assert not at.exception
    assert any(h.value.startswith("### Step 3 ·") for h in at.markdown)
    assert at.query_params["step"] == "3"


def test_metadata_is_shown_as_inert_text(monkeypatch, tau_corpus: Path) -> None:
    at = make_app(monkeypatch, tau_corpus, page="trajectory", trajectory="tau-bench:3:0")
    at.session_state["run_details_open"] = True
    at.session_state["run_details_tab"] = "Source metadata"
    at.run()
    assert not at.exception
    assert not at.dataframe  # only the open tab runs
    codes = [c.value for c in at.code]
    assert any(MARKDOWN_IMAGE in c and '"r_actions": 0.0' in c for c in codes)  # as typed, in a code block
    assert_inert(rendered_markdown(at))


def test_run_with_no_reference_and_a_passing_run(monkeypatch, tiny_corpus: Path) -> None:
    import pyarrow.parquet as pq

    trajs = pq.read_table(tiny_corpus / "trajectories").to_pylist()
    ok = next(t for t in trajs if t["outcome"] == "success")
    at = make_app(monkeypatch, tiny_corpus, page="trajectory", trajectory=ok["trajectory_id"])
    at.session_state["run_details_open"] = True
    at.run()
    assert not at.exception
    assert not at.warning  # a success says nothing about its outcome's source outside the panel
    md = shown(page_markdown(at))
    assert "it comes from the source's reward (1" in md
    assert "The source names no expected actions" in "\n".join(c.value for c in at.caption)
