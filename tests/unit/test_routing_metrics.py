"""Expert-routing statistics on a hand-built replay cache with planted expert choices."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from horizonlens.corpus.schema import REPLAY_STEPS, ROUTING
from horizonlens.metrics import replays, routing
from horizonlens.metrics.info import js_distance
from horizonlens.query.store import open_store
from horizonlens.replays import codec as rf
from horizonlens.replays.cache import ReplayCache, StoredReplay
from horizonlens.replays.migrate import migrate
from tests.support.corpora import SAMPLE_CORPUS, make_corpus, step_row, traj_row
from tests.support.old_formats import write_format1_cache

TOKEN_STEPS = [0, 0, 1, 1, 2, 2]
SEGMENTS = ["user", "user", "reasoning", "reasoning", "tool_call", "tool_call"]
A_L0 = [[0, 1], [0, 1], [0, 2], [2, 3], [2, 3], [3, 0]]
A_L1 = [[1, 2]] * 6
B_L0 = [[0, 1], [1, 3], [3, 1], [2, 3], [3, 2], [0, 1]]


def _write(root: Path, ckpt: str, layers: dict[int, list[list[int]]], layout: str) -> None:
    """The planted routing as a format-1 cache (per-token rows), or in the two tiers (tokens or steps only)."""
    steps = pa.Table.from_pylist([{"trajectory_id": "T-t0", "step": s, "n_tokens": 2, "n_scored": 2,
                                   "surprisal": 1.0 + s, "max_surprisal": 2.0, "top1_agreement": 0.5,
                                   "entropy": 1.0, "truncated": False} for s in range(3)], schema=REPLAY_STEPS)
    cache = ReplayCache(root, ckpt)
    if layout == "format1":  # an old cache, upgraded by `horizonlens migrate` (the store reads only the current one)
        rows = []
        for t in range(6):
            for layer, experts in layers.items():
                rows.append({"trajectory_id": "T-t0", "step": TOKEN_STEPS[t], "segment": SEGMENTS[t],
                             "token_index": t, "token_id": 100 + t, "layer": layer, "experts": experts[t],
                             "weights": [0.6, 0.4], "entropy": 1.0})
        routing_rows = pa.Table.from_pylist(rows, schema=ROUTING)
        write_format1_cache(root, ckpt, {"T-t0": {"steps": steps, "routing": routing_rows}})
        assert [r.converted for r in migrate(root).caches] == [1]
    else:
        order = sorted(layers)
        experts = np.array([[layers[layer][t] for layer in order] for t in range(6)])  # (tokens, layers, k)
        weights = np.broadcast_to(np.array([0.6, 0.4]), experts.shape)
        per_token = {"steps": np.array(TOKEN_STEPS), "segments": np.array(SEGMENTS)}
        tables = {"steps": steps, **rf.aggregate_tables("T-t0", order, experts, weights, 4, **per_token)}
        if layout == "tokens":
            tables["routing_tokens"] = rf.token_table("T-t0", order, experts, weights, np.ones(experts.shape[:2]),
                                                      None, 4, token_ids=np.arange(100, 106), **per_token)
        cache.write([StoredReplay("T-t0", tables, {"routing": layout})])
    (cache.root / "checkpoint.json").write_text('{"num_experts": 4}')


@pytest.fixture(params=["format1", "tokens", "steps"])
def layout(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture()
def store(tmp_path: Path, layout: str):
    root = make_corpus(tmp_path / "c", [traj_row("T-t0", 3)],
                       [step_row("T-t0", 0, "user", None), step_row("T-t0", 1), step_row("T-t0", 2, check=False)])
    _write(root, "ck-a", {0: A_L0, 1: A_L1}, layout)
    _write(root, "ck-b", {0: B_L0}, layout)
    return open_store(root)


def test_expert_load_against_uniform(store) -> None:
    load = routing.expert_load(store, "ck-a")
    l0 = load[load["layer"] == 0].set_index("expert")
    assert l0["assignments"].tolist() == [4, 2, 3, 3]
    assert l0["share"].tolist() == pytest.approx([4 / 12, 2 / 12, 3 / 12, 3 / 12])
    assert l0["specialization"].iloc[0] == pytest.approx((4 / 12) / 0.25)
    l1 = load[load["layer"] == 1].set_index("expert")
    assert l1["assignments"].tolist() == [0, 6, 6, 0]  # unused experts appear with zero load
    seg = routing.expert_load(store, "ck-a", by="segment")
    user = seg[(seg["layer"] == 0) & (seg["group"] == "user")].set_index("expert")["share"]
    assert user.tolist() == pytest.approx([0.5, 0.5, 0, 0])
    dom = routing.expert_load(store, "ck-a", by="domain")
    assert set(dom["group"]) == {"search"}


def test_layer_usage(store) -> None:
    usage = routing.layer_usage(store, "ck-a").set_index("layer")
    assert usage.loc[1, "usage_entropy"] == pytest.approx(math.log(2))
    assert usage.loc[1, "unused_experts"] == 2 and usage.loc[1, "imbalance"] == pytest.approx(2.0)
    counts = np.array([4, 2, 3, 3]) / 12
    assert usage.loc[0, "usage_entropy"] == pytest.approx(float(-(counts * np.log(counts)).sum()))


def test_coactivation(store, layout: str) -> None:
    co = routing.coactivation(store, "ck-a", layer=0)
    if layout == "steps":  # no token rows: nothing to count, and the note says it read none
        assert co.empty and co.attrs["sample"]["tokens"] == 0
        return
    assert co.attrs["sample"] == {"trajectories": 1, "of_trajectories": 1, "tokens": 6, "of_tokens": 6,
                                  "sampled": False}
    e0 = co[co["i"] == 0].set_index("j")["rate"]
    assert e0.to_dict() == pytest.approx({1: 0.5, 2: 0.25, 3: 0.25})
    e1 = co[co["i"] == 1].set_index("j")["rate"]
    assert e1.to_dict() == pytest.approx({0: 1.0})


def test_consecutive_same_expert(store, layout: str) -> None:
    df = routing.consecutive_same_expert(store, "ck-a").set_index("layer")
    if layout == "steps":
        assert df.empty
        return
    assert df.loc[0, "pairs"] == 5
    assert df.loc[0, "same_top1"] == pytest.approx(3 / 5)
    assert df.loc[0, "any_overlap"] == pytest.approx(1.0)
    assert df.loc[0, "random_baseline_top1"] == pytest.approx(14 / 36)
    assert df.loc[1, "same_top1"] == pytest.approx(1.0)


def test_step_load_and_drift(store) -> None:
    load = routing.step_expert_load(store, "ck-a", "T-t0", layer=0)
    step2 = load[load["step"] == 2].set_index("expert")["share"]
    assert step2.to_dict() == pytest.approx({0: 0.25, 2: 0.25, 3: 0.5})
    drift = routing.routing_drift(store, "ck-a", "T-t0", reference_steps=1).set_index("step")["drift"]
    assert drift.loc[1] == pytest.approx(0.0)  # the reference step itself
    l0 = js_distance(np.array([1, 0, 1, 2]), np.array([1, 0, 2, 1]))  # layer 0: step 2 vs step 1
    assert drift.loc[2] == pytest.approx((l0 + 0.0) / 2)  # layer 1 routes identically everywhere
    layered = routing.routing_drift(store, "ck-a", "T-t0", reference_steps=1, per_layer=True).set_index("step")
    assert list(layered.columns) == ["drift_L0", "drift_L1", "drift"]
    assert layered.loc[2, "drift_L0"] == pytest.approx(l0) and layered.loc[2, "drift_L1"] == pytest.approx(0.0)


def test_step_expert_shares_and_notes(store, layout: str) -> None:
    shares = routing.step_expert_shares(store, "ck-a", "T-t0", 2)
    assert shares["expert"].tolist() == [2, 1, 3, 0]  # step 2, both layers: 2 has 1 + 2, then 1 and 3 tie at 2
    assert shares["share"].tolist() == pytest.approx([3 / 8, 2 / 8, 2 / 8, 1 / 8])
    # a format-1 cache, once migrated, holds the token tier and says so
    assert replays.replay_notes(store, "ck-a", "T-t0") == {"routing": "tokens" if layout == "format1" else layout}


def test_checkpoint_agreement(store, layout: str) -> None:
    agree = routing.checkpoint_agreement(store, "ck-a", "ck-b", "T-t0").set_index("layer")
    if layout == "steps":
        assert agree.empty
        return
    assert list(agree.index) == [0]  # only layer 0 exists in both
    assert agree.loc[0, "agreement"] == pytest.approx(4 / 6)
    assert agree.loc[0, "top1_agreement"] == pytest.approx(2 / 6)


def test_js_distance_bounds() -> None:
    assert js_distance(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)
    assert js_distance(np.array([1, 1]), np.array([2, 2])) == pytest.approx(0.0)


def test_model_side_signals(store) -> None:
    from horizonlens.metrics import model_side

    by_step = model_side.signals_by_step(store, "ck-a").set_index("step")
    assert by_step["surprisal"].to_dict() == pytest.approx({1: 2.0, 2: 3.0})  # agent steps only
    assert by_step.loc[2, "failed_share"] == 1.0
    around = model_side.around_failures(store, "ck-a", window=1)
    failed = around[around["anchor"] == "failed check"].set_index("step_offset")["surprisal"]
    passed = around[around["anchor"] == "passed check"].set_index("step_offset")["surprisal"]
    assert failed.to_dict() == pytest.approx({-1: 2.0, 0: 3.0})
    assert passed.to_dict() == pytest.approx({0: 2.0, 1: 3.0})


def test_js_distances_match_the_scalar_one() -> None:
    rng = np.random.default_rng(0)
    p, q = rng.integers(0, 5, (6, 3, 8)), rng.integers(0, 5, (1, 3, 8))
    p[0, 0] = 0  # an empty distribution: distance 0, as js_distance says
    want = np.array([[js_distance(p[s, li], q[0, li]) for li in range(3)] for s in range(6)])
    np.testing.assert_allclose(routing.js_distances(p, q), want, atol=1e-12)


def test_token_statistics_read_a_bounded_sample() -> None:

    corpus = SAMPLE_CORPUS
    store = open_store(corpus)
    ckpt = store.replay_checkpoints[0]
    full = routing.coactivation(store, ckpt, 1, max_rows=None)
    part = routing.coactivation(store, ckpt, 1, max_rows=20_000)
    assert not full.attrs["sample"]["sampled"] and full.attrs["sample"]["trajectories"] == 60
    assert part.attrs["sample"]["sampled"] and part.attrs["sample"]["tokens"] <= 20_000
    ids, note = routing.token_sample(store, ckpt, None, 20_000)
    assert note == part.attrs["sample"] and routing.token_sample(store, ckpt, None, 20_000)[0] == ids  # stable
    pd.testing.assert_frame_equal(part, routing.coactivation(store, ckpt, 1, trajectory_ids=ids, max_rows=None))
    layers = len(replays.moe_layers(store, ckpt))
    consecutive = routing.consecutive_same_expert(store, ckpt, max_rows=20_000 * layers)
    assert consecutive.attrs["sample"] == note
    pd.testing.assert_frame_equal(consecutive, routing.consecutive_same_expert(store, ckpt, trajectory_ids=ids,
                                                                               max_rows=None))
