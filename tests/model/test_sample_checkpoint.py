"""The bundled sample checkpoint: loads, routes with structure, and matches the committed replay cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support.corpora import REPO, SAMPLE_CORPUS

pytest.importorskip("torch")
pytestmark = pytest.mark.model
CKPT = REPO / "sample_data" / "checkpoint"
CORPUS = SAMPLE_CORPUS


@pytest.fixture(scope="module")
def loaded():
    from horizonlens.model.loader import load_checkpoint

    return load_checkpoint(CKPT)


def test_architecture_is_agents_a1_in_miniature(loaded) -> None:
    cfg = loaded.model.config
    assert loaded.architecture == "Qwen3_5MoeForCausalLM"
    assert cfg.layer_types.count("linear_attention") == 3 and cfg.layer_types[-1] == "full_attention"
    assert loaded.num_experts == 16 and loaded.top_k == 2 and cfg.shared_expert_intermediate_size > 0
    assert sum(p.stat().st_size for p in CKPT.iterdir()) < 40 * 2**20


def test_committed_cache_equals_a_fresh_replay(loaded) -> None:
    from horizonlens.model.replay import replay_trajectory
    from horizonlens.query.store import open_store
    from horizonlens.replays.cache import ReplayCache
    from horizonlens.replays.codec import decode_token_table

    store = open_store(CORPUS)
    assert loaded.checkpoint_id in store.replay_checkpoints
    cache = ReplayCache(CORPUS, loaded.checkpoint_id)
    tid = min(cache.cached_ids())
    fresh = replay_trajectory(loaded, tid, store.steps(tid).to_pylist())
    cached = cache.read_routing(tid).to_pandas()
    fresh_rt = decode_token_table(fresh.routing_table()).to_pandas()  # the token tier, decoded as the cache is
    assert len(cached) == len(fresh_rt)
    same = [sorted(a) == sorted(b) for a, b in zip(cached["experts"], fresh_rt["experts"], strict=True)]
    assert np.mean(same) > 0.99  # fp32 on CPU; a rare near-tie may differ across machines
    steps = cache.read_steps(tid).to_pandas()
    np.testing.assert_allclose(steps["surprisal"].dropna(), fresh.step_table().to_pandas()["surprisal"].dropna(),
                               rtol=1e-3)


def test_training_report_shows_learning_and_balance() -> None:
    report = json.loads((CKPT / "training_report.json").read_text())
    assert report["heldout_loss"]["trained"] < 0.25 * report["heldout_loss"]["random_init"]
    layers = report["routing_vs_random_init"]["trained"]["layers"]
    max_h = report["routing_vs_random_init"]["trained"]["max_entropy"]
    assert all(v["usage_entropy"] > 0.9 * max_h for v in layers.values())  # no collapsed layer
