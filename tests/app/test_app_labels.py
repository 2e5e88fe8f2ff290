"""AppTest: labels added, edited and deleted on the Trajectory page; Explore's label filter; Compounding's label facet
and early-warning chart."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from horizonlens.labels import annotations as ann
from horizonlens.query import labels as label_queries
from horizonlens.query import open_store
from tests.support.app import make_app, page_markdown
from tests.support.corpora import HOSTILE, REPO, SAMPLE_CORPUS


def _button(at, label: str):  # noqa: ANN001, ANN202
    return next(b for b in at.button if b.label == label)


def test_add_edit_delete_a_label_on_the_trajectory_page(monkeypatch, tiny_corpus: Path, tmp_path: Path) -> None:
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    tid = open_store(corpus).list_trajectories(sort="trajectory_id", limit=1).rows["trajectory_id"][0].as_py()
    at = make_app(monkeypatch, corpus, page="trajectory", trajectory=tid, step="2")
    at.run()
    assert not at.exception, at.exception
    assert any("No label on this run or on step 2" in c.value for c in at.caption)
    at.text_input(key="labels_add_label").set_value(HOSTILE)
    at.selectbox(key="labels_add_category").set_value("root_cause")  # (AppTest cannot type a new option)
    at.text_area(key="labels_add_note").set_value("**bold** [link](javascript:alert(1))")
    _button(at, "Add label").click().run()
    assert not at.exception, at.exception
    assert any("Label added to step 2" in s.value for s in at.success)
    (row,) = label_queries.labels_of(open_store(corpus), tid).to_pylist()
    assert (row["label"], row["category"], row["step"]) == (HOSTILE.strip(), "root_cause", 2)
    shown = at.dataframe[0].value
    assert shown["label"].tolist() == [HOSTILE.strip()]  # in a table, as text
    assert "<script>" not in page_markdown(at)

    at.radio(key="labels_add_scope").set_value("the whole run")
    at.text_input(key="labels_add_label").set_value("run-level")
    _button(at, "Add label").click().run()
    assert len(at.dataframe[0].value) == 2

    at.query_params["step"] = "3"
    at.run()
    assert at.dataframe[0].value["label"].tolist() == ["run-level"]  # step 2's label is not on step 3
    assert any("Labels on other steps of this run: 2" in c.value for c in at.caption)

    pick = at.selectbox(key="labels_edit_pick")
    pick.set_value(row["annotation_id"]).run()
    label_inputs = [t for t in at.text_input if t.label == "Label" and t.value == HOSTILE.strip()]
    label_inputs[0].set_value("edited")
    _button(at, "Save as new version").click().run()
    assert not at.exception, at.exception
    assert any("Saved version 2" in s.value for s in at.success)
    history = label_queries.label_history(open_store(corpus), row["annotation_id"]).to_pylist()
    assert [(h["version"], h["label"]) for h in history] == [(1, HOSTILE.strip()), (2, "edited")]

    at.selectbox(key="labels_edit_pick").set_value(row["annotation_id"]).run()
    _button(at, "Delete label").click().run()
    assert any("Label deleted" in s.value for s in at.success)
    assert [r["label"] for r in label_queries.labels_of(open_store(corpus), tid).to_pylist()] == ["run-level"]


def test_a_refused_label_says_why(monkeypatch, tiny_corpus: Path, tmp_path: Path) -> None:
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    tid = open_store(corpus).list_trajectories(limit=1).rows["trajectory_id"][0].as_py()
    at = make_app(monkeypatch, corpus, page="trajectory", trajectory=tid, step="1")
    at.run()
    _button(at, "Add label").click().run()  # empty label
    assert any("Not saved: a label needs a label" in e.value for e in at.error)
    assert not ann.annotations_dataset(corpus).exists()


def test_explore_filters_by_label(monkeypatch, tiny_corpus: Path, tmp_path: Path) -> None:
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    ids = open_store(corpus).list_trajectories(sort="trajectory_id", limit=3).rows["trajectory_id"].to_pylist()
    ann.add_labels(corpus, [ann.Label(ids[0], "loop", step=1), ann.Label(ids[2], "loop"), ann.Label(ids[1], "other")])
    at = make_app(monkeypatch, corpus)
    at.run()
    assert at.multiselect(key="explore_labels").options == ["loop", "other"]
    at.multiselect(key="explore_labels").select("loop").run()
    assert "**2** trajectories" in page_markdown(at)
    assert sorted(at.dataframe[0].value["trajectory_id"]) == [ids[0], ids[2]]


def test_compounding_label_facet_attribution_and_early_warning(monkeypatch, tmp_path: Path) -> None:
    sample = SAMPLE_CORPUS
    corpus = Path(shutil.copytree(sample, tmp_path / "corpus"))
    store = open_store(corpus)
    failed = store.query("SELECT trajectory_id, first_failed_step FROM trajectories WHERE first_failed_step IS NOT "
                         "NULL ORDER BY trajectory_id LIMIT 3").to_pylist()
    ann.add_labels(corpus, [ann.Label(r["trajectory_id"], "first failure", "judge", step=r["first_failed_step"])
                            for r in failed])
    at = make_app(monkeypatch, corpus, REPO / "sample_data" / "checkpoint", page="compounding")
    at.run(timeout=300)
    assert not at.exception, at.exception
    at.selectbox(key="comp_facet").select("label_category").run(timeout=300)
    assert not at.exception, at.exception
    groups = set(at.dataframe[0].value["group"])
    assert groups == {"(no label)", "judge"}
    at.session_state["comp_tab"] = "Decisive step"  # only the open tab runs
    at.run(timeout=300)
    at.selectbox(key="comp_attr_truth").select("label:judge@manual").run(timeout=300)
    acc = next(d.value for d in at.dataframe if "predictor" in d.value.columns)
    first = acc.set_index("predictor").loc["first_failed_check"]
    assert first["trajectories"] == 3 and first["exact"] == 1.0  # the labels sit on the first failed checks
    at.session_state["comp_tab"] = "Early warning"
    at.run(timeout=300)
    ew = next(d.value for d in at.dataframe if "auroc" in d.value.columns)
    assert {"surprisal", "drift", "position", "previous_failed"} <= set(ew["signal"])
    at.slider(key="comp_ew_k").set_value(1).run(timeout=300)
    assert not at.exception, at.exception
    ew = next(d.value for d in at.dataframe if "auroc" in d.value.columns)
    assert set(ew["k"]) == {1}
    at.session_state["comp_tab"] = "Horizons"  # the slider is not drawn there, and keeps its value
    at.run(timeout=300)
    at.session_state["comp_tab"] = "Early warning"
    at.run(timeout=300)
    assert at.slider(key="comp_ew_k").value == 1
    at.session_state["comp_tab"] = "Decisive step"
    at.run(timeout=300)
    assert at.selectbox(key="comp_attr_truth").value == "label:judge@manual"


def _run_with_steps(corpus: Path) -> tuple[str, int]:
    row = open_store(corpus).query("SELECT trajectory_id, n_steps FROM trajectories WHERE n_steps >= 4 "
                                   "ORDER BY trajectory_id LIMIT 1").to_pylist()[0]
    return row["trajectory_id"], row["n_steps"]


def test_the_edit_form_keeps_a_label_on_its_run(monkeypatch, tiny_corpus: Path, tmp_path: Path) -> None:
    """The step field stops at the run's last step, and a step past it is refused when saved (nothing written)."""
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    tid, n_steps = _run_with_steps(corpus)
    (aid,), _ = ann.add_labels(corpus, [ann.Label(tid, "here", step=1)])
    at = make_app(monkeypatch, corpus, page="trajectory", trajectory=tid, step="1")
    at.run()
    step_input = next(n for n in at.number_input if n.label.startswith("Step"))
    assert step_input.max == n_steps - 1
    step_input.set_value(999_999_999)  # the browser clamps to max; a value past it never reaches the save
    _button(at, "Save as new version").click().run()
    assert not at.exception, at.exception
    assert all(h["step"] < n_steps for h in label_queries.label_history(open_store(corpus), aid).to_pylist())
    with pytest.raises(ann.LabelError, match="past the end"):  # and the write itself refuses it
        ann.edit_label(corpus, aid, ann.Label(tid, "here", step=999_999_999))


def test_labels_past_the_end_of_a_run_are_flagged(monkeypatch, tiny_corpus: Path, tmp_path: Path) -> None:
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    tid, n_steps = _run_with_steps(corpus)
    monkeypatch.setattr(ann, "check_steps", lambda root, labels: None)  # as an older version wrote them
    ann.add_labels(corpus, [ann.Label(tid, "lost", step=n_steps + 5), ann.Label(tid, "fine", step=1)])
    monkeypatch.undo()
    at = make_app(monkeypatch, corpus, page="trajectory", trajectory=tid, step="1")
    at.run()
    assert not at.exception, at.exception
    assert any("past the end of this run" in w.value for w in at.warning), [w.value for w in at.warning]


def test_a_run_with_many_labels_ships_a_page_of_them(monkeypatch, tiny_corpus: Path, tmp_path: Path) -> None:
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    tid, n_steps = _run_with_steps(corpus)
    ann.add_labels(corpus, [ann.Label(tid, f"label {i:04d}", step=i % 2 if i % 3 else None) for i in range(1_200)])
    at = make_app(monkeypatch, corpus, page="trajectory", trajectory=tid, step="1")
    at.run()
    assert not at.exception, at.exception
    assert len(at.dataframe[0].value) <= 200
    pick = at.selectbox(key="labels_edit_pick")
    assert len(pick.options) <= 200
    assert any("1,200 labels" in c.value for c in at.caption), [c.value for c in at.caption]
    at.number_input(key="labels_edit_page").set_value(2).run()
    second = at.selectbox(key="labels_edit_pick").options
    assert second and set(second).isdisjoint(pick.options)
