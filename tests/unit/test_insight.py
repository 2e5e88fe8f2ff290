"""Failure modes, tool use, routing probe and the replayed-set sample, checked against planted data and sklearn."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from horizonlens.metrics import modes as mmodes
from horizonlens.metrics import tool_use
from horizonlens.metrics.replay_set import stratified_sample
from horizonlens.metrics.routing_probe import probe_one
from horizonlens.query.store import open_store
from tests.support.corpora import SAMPLE_CORPUS, make_corpus, step_row, traj_row

FAMILIES = {
    "path": ("read_file", lambda r: {"path": f"lib/mod_{r.randint(0, 999)}.py"},
             lambda r, a: f"Error: FileNotFoundError: {a['path']}"),
    "flight": ("book_reservation", lambda r: {"flight_id": f"HL{r.randint(100, 999)}", "cabin": "economy"},
               lambda r, a: f"Error: cabin 'economy' not available on {a['flight_id']}"),
    "calc": ("calc", lambda r: {"expression": f"{r.randint(1, 99)} * {r.random():.3f}"},
             lambda r, a: f"{r.random() * 1000:.4f}"),
}


def _call(cid: str, name: str, args: dict) -> dict:
    return {"id": cid, "name": name, "arguments": json.dumps(args)}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 runs, each with failed steps from one of three error families; run 0 repeats, run 1 loops."""
    r = random.Random(3)
    trajs, steps = [], []
    for i in range(60):
        family = list(FAMILIES)[i % 3]
        tool, make_args, observe = FAMILIES[family]
        tid = f"run-{i:02d}"
        rows = [step_row(tid, 0, "user", None, message="task")]
        for s in range(1, 9):
            failed = s % 3 == 0
            args = make_args(r)
            rows.append(step_row(tid, s, check=not failed, tool_calls=[_call(f"c{s}", tool if failed else "noop",
                                                                             args if failed else {"n": s})],
                                 observations=[{"call_id": f"c{s}", "content": observe(r, args) if failed else "ok"}],
                                 check_detail=f"planted {family}" if failed else None,
                                 error_label=family if failed else None))
        if i == 0:  # a repeated call: step 7's call equals step 6's
            rows[7]["tool_calls"] = rows[6]["tool_calls"]
        if i == 1:  # a loop: calls A, B, A, B on steps 1-4 (step 3 then passes its check)
            a, b = _call("x", "search", {"q": "x"}), _call("y", "open", {"id": 1})
            for s, c in ((1, a), (2, b), (3, a), (4, b)):
                rows[s]["tool_calls"] = [c]
                rows[s]["observations"] = [{"call_id": c["id"], "content": "ok"}]
            rows[3].update(check_passed=True, check_detail=None, error_label=None)
        steps += rows
        trajs.append(traj_row(tid, len(rows), task_id=f"task-{i // 4}", domain=family,
                              outcome="success" if i % 4 else "failure", agent=f"agent-{i % 2}",
                              n_failed_checks=sum(1 for x in rows if x.get("check_passed") is False)))
    return make_corpus(tmp_path_factory.mktemp("planted") / "c", trajs, steps)


def test_modes_recover_the_planted_error_families(planted: Path) -> None:
    store = open_store(planted)
    result = mmodes.compute_modes(store, config=mmodes.ModeConfig(min_cluster_size=5))
    steps = mmodes.failed_steps(store).merge(result.members, on=["trajectory_id", "step"])
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(steps["error_label"], steps["mode"]) > 0.95
    assert (result.modes["mode"] >= 0).sum() == 3
    terms = " ".join(result.modes["terms"])
    assert "filenotfounderror" in terms and "cabin" in terms and "calc" in terms


def test_mode_text_masks_values_ids_and_numbers(planted: Path) -> None:
    """A failed step's text, built in SQL: argument names with masked values, then the masked observation and check."""
    steps = mmodes.failed_steps(open_store(planted)).set_index(["trajectory_id", "step"])
    flight = steps.loc[("run-01", 6)]  # run 1 is of the flight family
    assert flight["text"] == ("tool book_reservation flight_id=qval cabin=qval | error: cabin qval not available on "
                              "idval | planted flight")
    assert flight["tools"] == "book_reservation"
    calc = steps.loc[("run-02", 3)]
    assert calc["text"] == "tool calc expression=qval | num | planted calc"


def test_single_quotes_mask_values_but_not_apostrophes(tmp_path: Path) -> None:
    call = _call("c", "grep", {"pattern": "x", "n": 3, "ok": True, "opts": {"a": 1}})
    rows = [step_row("q", 0, check=False, tool_calls=[call, _call("d", "grep", {}), _call("e", "ls", {})],
                     observations=[{"call_id": "c", "content": "don't 'a' 'b' at  line\n12,345 of file9.py"}],
                     check_detail='"quoted" result -2.5e3')]
    store = open_store(make_corpus(tmp_path / "c", [traj_row("q", 1, n_failed_checks=1)], rows))
    found = mmodes.failed_steps(store).iloc[0]
    assert found["text"] == ("tool grep pattern=qval n=num ok=num opts=qval tool grep tool ls | don't qval qval at "
                             "line num of idval .py | qval result num")
    assert found["tools"] == "grep, ls"


def test_char_tfidf_equals_scikit_learn_char_wb() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    r = random.Random(5)
    vocab = ["".join(r.choice("abcdefgh_=|") for _ in range(r.randint(1, 9))) for _ in range(300)]
    texts = sorted({" ".join(r.choice(vocab) for _ in range(r.randint(1, 30))) for _ in range(400)})
    fit = np.arange(0, len(texts), 3)
    reference = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, lowercase=False)
    expected = reference.fit([texts[i] for i in fit]).transform(texts).toarray()
    found = mmodes.char_tfidf(texts, fit).toarray()
    assert found.shape == expected.shape
    np.testing.assert_allclose(found, expected, atol=1e-6)
    assert mmodes.char_tfidf(texts, fit, max_features=50).shape[1] == 50


def test_mode_labels_never_read_alike() -> None:
    terms = {0: ["kg", "from_unit", "to_unit", "value", "g"], 1: ["kg", "to_unit", "from_unit", "value", "t"],
             2: ["kg", "from_unit", "to_unit", "g"], 3: ["doc", "query"]}
    labels = mmodes.label_terms(terms, [0, 1, 2, 3])
    assert labels[0] == ["kg", "from_unit", "to_unit"]
    assert labels[1] == ["kg", "to_unit", "t"]  # its best term that mode 0 does not rank
    assert labels[2] == ["kg", "from_unit", "to_unit"]  # nothing sets it apart from mode 0: its number does
    assert labels[3] == ["doc", "query"]


def test_labels_are_read_from_a_bounded_seeded_sample_of_each_mode() -> None:
    modes = np.array([0] * 5_000 + [1] * 10 + [-1] * 3_000)
    rows = mmodes.label_sample(modes, seed=3, per_mode=2_000)
    assert (np.diff(rows) > 0).all()
    assert np.bincount(modes[rows] + 1).tolist() == [2_000, 2_000, 10]  # unclustered, mode 0, mode 1
    assert rows.tolist() == mmodes.label_sample(modes, seed=3, per_mode=2_000).tolist()


def test_modes_where_predicate_and_json(planted: Path) -> None:
    store = open_store(planted)
    result = mmodes.find_modes(store, "t.domain = 'path'", mmodes.ModeConfig(min_cluster_size=5), keep=False)
    out = result.to_json()
    members = [m for mode in out["modes"] for m in mode["members"]]
    assert len(members) == out["note"]["failed_steps"] == 20 * 2
    assert all(store.trajectory(t)["domain"] == "path" for t, _ in members)
    with pytest.raises(Exception, match="one SELECT|refused|statement|syntax|Parser"):
        mmodes.find_modes(store, "true; DROP TABLE steps", keep=False)


def test_no_failed_steps_gives_an_empty_result(planted: Path) -> None:
    result = mmodes.compute_modes(open_store(planted), "t.domain = 'nothing'")
    assert result.modes.empty and result.note["failed_steps"] == 0


def test_tool_use_counts_planted_repeats_and_loops(planted: Path) -> None:
    found = tool_use.tool_use(open_store(planted))
    runs = found["runs"].set_index("trajectory_id")
    assert runs.loc["run-00", "repeated"] == 1 and runs.loc["run-00", "loop_calls"] == 0
    assert runs.loc["run-01", "loop_calls"] == 4 and runs.loc["run-01", "repeated"] == 0
    s = found["summary"]
    assert s["repeated_calls"] == 1 and s["runs_with_repeats"] == 1 and s["runs_with_loops"] == 1
    assert s["calls"] == 60 * 8


def test_probe_equals_plain_sklearn() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 10)
    y = np.array(["a", "b", "c"])[groups % 3]
    X = rng.random((300, 16)) + (groups % 3)[:, None] * np.eye(16)[groups % 3 * 4] * 0.5
    found = probe_one(X, y, groups)
    plain = cross_val_predict(LogisticRegression(max_iter=1000), X, y, groups=groups, cv=GroupKFold(n_splits=5))
    assert found is not None and found["accuracy"] == pytest.approx((plain == y).mean())
    assert found["lower"] <= found["accuracy"] <= found["upper"] and found["n"] == 300


def test_stratified_sample_is_proportional_and_seeded() -> None:
    frame = pd.DataFrame({"trajectory_id": [f"t{i}" for i in range(100)], "domain": ["a"] * 80 + ["b"] * 20,
                          "outcome": ["success", "failure"] * 50})
    drawn = stratified_sample(frame, 10, seed=1)
    chosen = frame[frame["trajectory_id"].isin(drawn)]
    assert len(drawn) == 10 and (chosen["domain"] == "a").sum() == 8
    assert drawn == stratified_sample(frame, 10, seed=1) and drawn != stratified_sample(frame, 10, seed=2)


def test_index_results_keeps_modes_and_probe_so_later_readers_compute_nothing(tmp_path: Path, monkeypatch) -> None:
    """`index --results` computes the modes and the probe once; a later process reads them back, as the pages do."""
    import shutil

    from typer.testing import CliRunner

    from horizonlens.cli import app
    from horizonlens.metrics import routing_probe
    from horizonlens.metrics.replay_set import replay_scope

    corpus = Path(shutil.copytree(SAMPLE_CORPUS, tmp_path / "corpus"))
    out = CliRunner().invoke(app, ["index", str(corpus), "--results"])
    assert out.exit_code == 0, out.output
    assert "modes: " in out.output and "routing probe of " in out.output
    kept = sorted(p.name.split("-")[0] for p in (corpus / "results").iterdir())
    assert kept == ["modes", "routing_probe"]

    def recomputed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("computed again instead of read back")

    monkeypatch.setattr(mmodes, "compute_modes", recomputed)
    monkeypatch.setattr(routing_probe, "routing_probe", recomputed)
    store = open_store(corpus)
    found = mmodes.find_modes(store, members=False)
    assert found.note["failed_steps"] > 0 and found.members.empty and not found.modes.empty
    checkpoint = store.replay_checkpoints[0]
    scope = replay_scope(store, checkpoint)  # the runs the Routing page probes by default: the recorded sample
    assert not routing_probe.kept_probe(store, checkpoint, scope.trajectory_ids).empty
