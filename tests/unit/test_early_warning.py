"""Early warning: AUROCs equal scikit-learn's, on hand-made replays and on the sample corpus with its replays."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from horizonlens.cli import app
from horizonlens.corpus.schema import REPLAY_STEPS
from horizonlens.metrics import early_warning as ew
from horizonlens.metrics.routing import routing_drift
from horizonlens.query import open_store
from horizonlens.replays.cache import ReplayCache, StoredReplay
from tests.support.corpora import REPO, SAMPLE_CORPUS, make_corpus, step_row, traj_row

sklearn_metrics = pytest.importorskip("sklearn.metrics")
roc_auc_score = sklearn_metrics.roc_auc_score
CKPT = "ck-test"


def test_auroc_equals_scikit_learn_with_ties_and_weights() -> None:
    rng = np.random.default_rng(5)
    for _ in range(50):
        n = int(rng.integers(5, 300))
        y = rng.random(n) < rng.uniform(0.05, 0.6)
        if y.all() or not y.any():
            continue
        scores = rng.integers(0, 6, n).astype(float) + y * rng.uniform(0, 2)  # many ties
        w = rng.integers(0, 4, n).astype(float)
        assert ew.auroc(scores, y) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
        if (w * y).sum() and (w * ~y).sum():
            assert ew.auroc(scores, y, w) == pytest.approx(roc_auc_score(y, scores, sample_weight=w), abs=1e-12)
    assert np.isnan(ew.auroc([1.0, 2.0], [1, 1]))
    assert ew.auroc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0 and ew.auroc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5


@pytest.fixture()
def replayed(tmp_path: Path) -> Path:
    """X: checks at 1 pass, 2 pass, 3 FAIL, 4 pass, 5 none, 6 FAIL; Y: 1-3 pass. Every agent step replayed."""
    trajs = [traj_row("X-t0", 7, "failure"), traj_row("Y-t0", 4)]
    checks = {1: True, 2: True, 3: False, 4: True, 5: None, 6: False}
    steps = [step_row("X-t0", 0, "user", None)] + [step_row("X-t0", s, check=c) for s, c in checks.items()]
    steps += [step_row("Y-t0", 0, "user", None)] + [step_row("Y-t0", s) for s in (1, 2, 3)]
    corpus = make_corpus(tmp_path / "c", trajs, steps)
    surprisal = {"X-t0": [0.5, 2.0, 1.0, 3.0, 3.0, 0.1], "Y-t0": [2.0, 0.2, 5.0]}
    for tid, values in surprisal.items():
        rows = [{"trajectory_id": tid, "step": s, "n_tokens": 5, "n_scored": 3, "surprisal": v, "max_surprisal": v * 2,
                 "top1_agreement": 0.5, "entropy": 1.0 + s, "truncated": False} for s, v in enumerate(values, 1)]
        ReplayCache(corpus, CKPT).write([StoredReplay(tid, {"steps": pa.Table.from_pylist(rows, schema=REPLAY_STEPS)})])
    return corpus


def test_step_table_and_aurocs_by_hand(replayed: Path) -> None:
    store = open_store(replayed)
    table = ew.step_table(store, CKPT, k=2).set_index(["trajectory_id", "step"])
    # X, k = 2: t=1 sees 2,3 (3 failed) -> 1; t=2 -> 1; t=3 sees 4 (passed) and 5 (no check) -> 0; t=4 sees 6 -> 1;
    # t=5 sees 6 -> 1; t=6 sees nothing checked -> not scored. Y: t=1, t=2 -> 0; t=3 not scored.
    assert table.loc["X-t0", "label"].tolist()[:5] == [1, 1, 0, 1, 1] and np.isnan(table.loc[("X-t0", 6), "label"])
    assert table.loc["Y-t0", "label"].tolist()[:2] == [0, 0] and np.isnan(table.loc[("Y-t0", 3), "label"])
    # the latest check at or before t failed: X t=3 (step 3) and t=6 (step 6); t=5's latest check is step 4
    assert table.loc["X-t0", "previous_failed"].tolist() == [0, 0, 1, 0, 0, 1]
    out = ew.early_warning(store, CKPT, k=2, n_boot=200).set_index("signal")
    assert list(out.index) == ["surprisal", "max_surprisal", "entropy", "position", "previous_failed"]  # no routing
    assert out.loc["surprisal", ["n_pos", "n_neg", "trajectories"]].tolist() == [4, 3, 2]
    # by hand: positives 0.5, 2.0, 3.0, 3.0 against negatives 1.0, 2.0, 0.2 -> (1 + 2.5 + 3 + 3) / 12
    assert out.loc["surprisal", "auroc"] == pytest.approx(9.5 / 12)
    assert out.loc["position", "auroc"] == pytest.approx(8 / 12)  # positions 1,2,4,5 vs 3,1,2
    assert out.loc["previous_failed", "auroc"] == pytest.approx(4 / 12)
    scored = table[table["label"].notna()]
    for name in out.index:
        assert out.loc[name, "auroc"] == pytest.approx(roc_auc_score(scored["label"], scored[name]), abs=1e-12)
    # lead time: X's surprisal reaches its 90th percentile (3.0) first at step 4; X first fails at 3 -> -1
    assert (out.loc["surprisal", "median_lead_steps"], out.loc["surprisal", "lead_runs"]) == (-1.0, 1)


def test_bootstrap_resamples_whole_trajectories(replayed: Path) -> None:
    """The interval equals a direct computation: resampled runs concatenated, scored by scikit-learn."""
    store = open_store(replayed)
    out = ew.early_warning(store, CKPT, k=2, n_boot=300, seed=11).set_index("signal")
    table = ew.step_table(store, CKPT, k=2)
    scored = table[table["label"].notna()]
    runs = sorted(scored["trajectory_id"].unique())
    draws = np.random.default_rng(11).multinomial(len(runs), np.full(len(runs), 1 / len(runs)), size=300)
    boots = []
    for draw in draws:
        parts = [scored[scored["trajectory_id"] == r] for r, c in zip(runs, draw, strict=True) for _ in range(c)]
        y = np.concatenate([p["label"].to_numpy() for p in parts])
        s = np.concatenate([p["surprisal"].to_numpy() for p in parts])
        if 0 < y.sum() < len(y):
            boots.append(roc_auc_score(y, s))
    lower, upper = np.percentile(boots, [2.5, 97.5])
    assert (out.loc["surprisal", "lower"], out.loc["surprisal", "upper"]) == pytest.approx((lower, upper), abs=1e-12)


def test_no_replays_gives_an_empty_table(tmp_path: Path) -> None:
    store = open_store(make_corpus(tmp_path / "c", [traj_row("A-t0", 2)], [step_row("A-t0", 0), step_row("A-t0", 1)]))
    assert ew.early_warning(store, "nothing-here").empty
    with pytest.raises(ValueError, match="whole number"):
        ew.step_table(store, "x", k=0)


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a CorpusStore
    """A copy of the bundled corpus: `metrics --checkpoint` keeps its routing probe inside the corpus it reads."""
    bundled = SAMPLE_CORPUS
    corpus = Path(shutil.copytree(bundled, tmp_path_factory.mktemp("sample") / "corpus",
                                  ignore=shutil.ignore_patterns(".lock", "results")))
    store = open_store(corpus)
    if not store.replay_checkpoints:
        pytest.skip("the sample corpus has no replays")
    return store


def _independent_events(store, ckpt: str, k: int) -> dict[tuple[str, int], int]:
    """(trajectory, agent step) -> event, computed in plain Python from the raw steps (no window functions)."""
    replayed = set(store.query("SELECT DISTINCT trajectory_id FROM replay_steps WHERE checkpoint_id = ?",
                               [ckpt]).column(0).to_pylist())
    events = {}
    for tid in sorted(replayed):
        steps = store.steps(tid).to_pylist()
        check = {s["step"]: s["check_passed"] for s in steps}
        for s in steps:
            if s["source"] != "agent":
                continue
            ahead = [check.get(t) for t in range(s["step"] + 1, s["step"] + k + 1) if check.get(t) is not None]
            if ahead:
                events[(tid, s["step"])] = int(any(c is False for c in ahead))
    return events


@pytest.mark.parametrize("k", [1, 3])
def test_sample_corpus_aurocs_equal_scikit_learn(sample_store, k: int) -> None:
    ckpt = sample_store.replay_checkpoints[0]
    out = ew.early_warning(sample_store, ckpt, k=k, n_boot=100).set_index("signal")
    events = _independent_events(sample_store, ckpt, k)
    replay = sample_store.query("SELECT trajectory_id, step, surprisal, max_surprisal, entropy FROM replay_steps "
                                "WHERE checkpoint_id = ?", [ckpt]).to_pandas().set_index(["trajectory_id", "step"])
    drift = {}
    for tid in sorted({t for t, _ in events}):
        d = routing_drift(sample_store, ckpt, tid, per_layer=True)
        for row in d.to_dict(orient="records"):
            drift[(tid, int(row["step"]))] = row
    layers = sorted(c for c in next(iter(drift.values())) if c.startswith("drift_L"))
    assert len(layers) == 4 and [f"drift_L{i}" for i in range(4)] == layers  # the sample checkpoint's MoE layers
    keys = [key for key in events if key in replay.index]
    y = np.array([events[key] for key in keys])
    signals = {name: np.array([replay.loc[key, name] for key in keys], dtype=float)
               for name in ("surprisal", "max_surprisal", "entropy")}
    signals.update({name: np.array([drift.get(key, {}).get(name, np.nan) for key in keys], dtype=float)
                    for name in ("drift", *layers)})
    signals["position"] = np.array([step for _, step in keys], dtype=float)
    assert set(out.index) == {*signals, "previous_failed"}
    for name, values in signals.items():
        ok = ~np.isnan(values)
        assert out.loc[name, "auroc"] == pytest.approx(roc_auc_score(y[ok], values[ok]), abs=1e-12), name
        assert (out.loc[name, "n_pos"], out.loc[name, "n_neg"]) == (int(y[ok].sum()), int((1 - y[ok]).sum()))
        assert out.loc[name, "lower"] <= out.loc[name, "auroc"] <= out.loc[name, "upper"]


def test_metrics_json_has_early_warning(sample_store) -> None:
    res = CliRunner().invoke(app, ["metrics", str(sample_store.root), "--checkpoint",
                                   str(REPO / "sample_data" / "checkpoint"), "--json", "--k", "3"])
    assert res.exit_code == 0, res.output[-2000:]
    rows = json.loads(res.output)["early_warning"]
    assert {"signal", "k", "auroc", "lower", "upper", "n_pos", "n_neg"} <= set(rows[0])
    assert {r["signal"] for r in rows} >= {"surprisal", "max_surprisal", "entropy", "drift", "drift_L0", "position",
                                           "previous_failed"}
    direct = ew.early_warning(sample_store, sample_store.replay_checkpoints[0], k=3).set_index("signal")
    for r in rows:
        assert r["k"] == 3 and r["auroc"] == pytest.approx(direct.loc[r["signal"], "auroc"])
