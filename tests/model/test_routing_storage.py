"""Routing storage end to end: replays at small versions of real shapes, stored, read back through the views.

The oracle is what each experts module received (a forward pre-hook on it): the stored expert sets and
top-1 must be exactly those, the stored weights within the documented quantization error, the step tier
equal to a direct count over the full-precision routing, and the stored margin equal to an independent
numpy computation from the router's own logits.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from horizonlens.cli import app  # noqa: E402
from horizonlens.metrics import replays, routing  # noqa: E402
from horizonlens.model.capture import router_margin  # noqa: E402
from horizonlens.model.loader import load_checkpoint  # noqa: E402
from horizonlens.model.replay import ReplayConfig, replay_trajectory  # noqa: E402
from horizonlens.model.shapes import build_shape  # noqa: E402
from horizonlens.query.store import open_store  # noqa: E402
from horizonlens.replays import codec as rf  #noqa: E402
from horizonlens.replays.cache import ReplayCache  # noqa: E402
from tests.support.model_zoo import record_expert_inputs  # noqa: E402
from tests.support.old_formats import write_format1_cache  # noqa: E402

pytestmark = pytest.mark.model
# small versions of the real shapes; DeepSeek-V3 keeps all 256 experts in its 8 groups of 32
SMALL = {"agents-a1": (4, 64), "qwen3-30b-a3b": (2, 32), "deepseek-v3": (5, 256), "gpt-oss-120b": (2, 32)}
TOKENS = 300


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shapes")
    for name, (layers, experts) in SMALL.items():
        build_shape(name, root / name, tiny_tokenizer, layers=layers, experts=experts, seed=5)
    return {name: root / name for name in SMALL}


@pytest.fixture()
def corpus(tmp_path: Path, tiny_corpus: Path) -> Path:
    return Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))


def _oracle(loaded, run):  # noqa: ANN001, ANN202
    """`record_expert_inputs` with numpy arrays: per MoE layer the experts module's (index, weights), and logits."""
    result, seen, logits = record_expert_inputs(loaded, run)
    return (result, {layer: (i.numpy(), w.numpy()) for layer, (i, w) in seen.items()},
            {layer: v.numpy() for layer, v in logits.items()})


def _margin_numpy(logits: np.ndarray, chosen: np.ndarray, module) -> np.ndarray:  # noqa: ANN001
    """The margin as documented (capture.router_margin), computed independently in numpy."""
    bias = getattr(module, "e_score_correction_bias", None)
    scores = logits if bias is None else 1 / (1 + np.exp(-logits)) + bias.detach().numpy()
    out = np.empty(len(scores))
    groups, topk_group = int(getattr(module, "num_group", 1) or 1), int(getattr(module, "topk_group", 0) or 0)
    for t, (row, pick) in enumerate(zip(scores, chosen, strict=True)):
        eligible = np.ones(len(row), bool)
        group_margin = np.inf
        if groups > 1:
            per = row.reshape(groups, -1)
            gscore = np.sort(per, axis=1)[:, -2:].sum(1)
            ranked = np.sort(gscore)[::-1]
            group_margin = ranked[topk_group - 1] - ranked[topk_group]
            picked = np.zeros(groups, bool)
            picked[np.argsort(-gscore, kind="stable")[:topk_group]] = True
            picked[np.unique(pick // per.shape[1])] = True
            eligible = np.repeat(picked, per.shape[1])
        others = np.setdiff1d(np.flatnonzero(eligible), pick)
        expert_margin = row[pick].min() - (row[others].max() if len(others) else -np.inf)
        out[t] = max(0.0, min(expert_margin, group_margin))
    return out


@pytest.mark.parametrize("name", sorted(SMALL))
def test_stored_routing_is_what_the_experts_received(shapes, corpus: Path, name: str) -> None:
    loaded = load_checkpoint(shapes[name])
    store = open_store(corpus)
    tid = store.list_trajectories(sort="n_tokens", descending=True, limit=1).rows["trajectory_id"][0].as_py()
    result, seen, logits = _oracle(loaded, lambda: replay_trajectory(
        loaded, tid, store.steps(tid).to_pylist(), ReplayConfig(max_tokens=TOKENS, chunk_size=97)))
    ReplayCache(corpus, loaded.checkpoint_id).write([result])
    store.refresh_replays()
    rows = store.query("SELECT token_index, layer, experts, weights, expert_set, top1_expert, margin FROM routing "
                       "WHERE checkpoint_id = ? ORDER BY token_index, layer", [loaded.checkpoint_id]).to_pandas()
    layers = sorted(seen)
    assert rows["layer"].unique().tolist() == layers and len(rows) == TOKENS * len(layers)
    scale = max(w.max() for _, w in seen.values())
    sites = {s.layer: s for s in loaded.routers}
    for li, layer in enumerate(layers):
        index, weights = seen[layer]
        mine = rows[rows["layer"] == layer]
        stored_sets = np.stack(mine["expert_set"].to_numpy())
        assert (stored_sets == np.sort(index, 1)).all(), (name, layer)  # after bias and group selection
        top1 = index[np.arange(TOKENS), np.argmax(weights, 1)]
        assert (mine["top1_expert"].to_numpy() == top1).all() and (np.stack(mine["experts"])[:, 0] == top1).all()
        got = np.stack(mine["weights"].to_numpy())
        got_by_id = np.take_along_axis(got, np.argsort(np.stack(mine["experts"]), 1), 1)
        true_by_id = np.take_along_axis(weights, np.argsort(index, 1), 1)
        assert np.abs(got_by_id - true_by_id).max() <= scale / (2 * rf.WEIGHT_LEVELS) + 1e-6
        expected = _margin_numpy(logits[layer], index, sites[layer].module)
        assert np.allclose(result.routing[layer].margin.numpy(), expected, rtol=1e-5, atol=1e-6), (name, layer)
        stored = mine["margin"].to_numpy()
        ok = expected >= 2.0**rf.MARGIN_MIN_LOG2
        assert (np.abs(np.log2(stored[ok] / expected[ok])) <= 0.25 + 1e-6).all()
        del li
    # the step tier is a direct count over the full-precision routing
    steps = store.query("SELECT step, layer, expert, tokens, mean_weight FROM routing_steps WHERE checkpoint_id = ?",
                        [loaded.checkpoint_id]).to_pandas().set_index(["step", "layer", "expert"])
    token_steps = result.rendered.steps[:TOKENS]
    for layer in layers:
        index, weights = seen[layer]
        for step in np.unique(token_steps):
            sel = token_steps == step
            ids, counts = np.unique(index[sel], return_counts=True)
            got = steps.loc[(int(step), layer)]
            assert got.index.tolist() == ids.tolist() and got["tokens"].tolist() == counts.tolist()
            means = np.array([weights[sel][index[sel] == e].mean() for e in ids])
            assert np.abs(got["mean_weight"].to_numpy() - means).max() <= scale / (2 * rf.STEP_WEIGHT_LEVELS) + 1e-6
    if name == "deepseek-v3":  # the group limit holds in what was stored: 4 of 8 groups of 32 experts
        assert max(len(set((np.array(s) // 32).tolist())) for s in rows["expert_set"]) <= 4


def test_router_margin_by_hand() -> None:
    module = torch.nn.Module()
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    assert router_margin(logits, torch.tensor([[0, 2]]), module, "softmax").tolist() == [1.0]
    # sigmoid scores plus bias, 2 groups of 2, one group per token: scores [0.9, 0.8, 0.95, 0.1]
    grouped = torch.nn.Module()
    grouped.num_group, grouped.topk_group = 2, 1
    grouped.e_score_correction_bias = torch.tensor([0.0, 0.0, 0.25, 0.0])
    s = torch.tensor([[0.9, 0.8, 0.7, 0.1]])
    margin = router_margin(torch.log(s / (1 - s)), torch.tensor([[0]]), grouped, "sigmoid")
    # group scores 1.7 vs 1.05 (margin 0.65); within group 0: 0.9 vs 0.8 (margin 0.1); expert 2 (0.95) is in
    # the group the router did not pick, so it is not a near miss
    assert margin.tolist() == pytest.approx([0.1], abs=1e-6)


def test_routing_steps_writes_no_token_tier(corpus: Path, tiny_checkpoint: Path) -> None:
    runner = CliRunner()
    args = ["replay", str(corpus), "--checkpoint", str(tiny_checkpoint), "--limit", "2", "--chunk-size", "256"]
    first = runner.invoke(app, [*args, "--routing", "steps"])
    assert first.exit_code == 0, first.output and "replayed 2" in first.output
    ckpt = load_checkpoint(tiny_checkpoint).checkpoint_id
    cache_dir = corpus / "replays" / ckpt
    assert not list(cache_dir.glob("routing_tokens/*.parquet")) and list(cache_dir.glob("routing_steps/*.parquet"))
    store = open_store(corpus)
    tids = replays.replayed_trajectories(store, ckpt)
    assert len(tids) == 2 and store.scalar("SELECT count(*) FROM routing") == 0
    assert store.scalar("SELECT count(*) FROM routing_steps") > 0
    assert replays.step_routing(store, ckpt, tids[0], 1).empty and not replays.has_token_routing(store, ckpt, tids[0])
    assert not routing.step_expert_load(store, ckpt, tids[0]).empty and replays.moe_layers(store, ckpt) == [0, 1, 2]
    cache = ReplayCache(corpus, ckpt)
    assert cache.has(tids[0]) and not cache.has(tids[0], tokens=True) and cache.read_routing(tids[0]) is None
    assert cache.cached_ids() == set(tids) and cache.cached_ids(tokens=True) == set()
    again = runner.invoke(app, [*args, "--routing", "steps"])
    assert "replayed 0, already cached 2" in again.output
    tokens = runner.invoke(app, args)  # token routing wanted now: those replays do not have it
    assert "replayed 2, already cached 0" in tokens.output
    assert list(cache_dir.glob("routing_tokens/*.parquet")) and cache.has(tids[0], tokens=True)
    bad = runner.invoke(app, [*args, "--routing", "all"])
    assert bad.exit_code == 1 and "routing must be one of tokens, steps" in bad.output


def _view_results(corpus: Path) -> dict:
    store = open_store(corpus)
    ckpt = store.replay_checkpoints[0]
    tids = replays.replayed_trajectories(store, ckpt)
    return {"tids": tids, "problems": store.problems,
            "segments": routing.expert_load(store, ckpt, "segment").to_dict("list"),
            "domains": routing.expert_load(store, ckpt, "domain").to_dict("list"),
            "usage": routing.layer_usage(store, ckpt).round(12).to_dict("list"),
            "steps": routing.step_expert_load(store, ckpt, tids[0]).to_dict("list"),
            "drift": routing.routing_drift(store, ckpt, tids[-1]).round(12).to_dict("list"),
            "coact": routing.coactivation(store, ckpt, replays.moe_layers(store, ckpt)[-1]).to_dict("list"),
            "consecutive": routing.consecutive_same_expert(store, ckpt).round(12).to_dict("list"),
            "sets": store.query("SELECT trajectory_id, token_index, layer, expert_set, top1_expert, token_id, step, "
                                "segment FROM routing ORDER BY ALL").to_pylist(),
            "replay_steps": store.query("SELECT * FROM replay_steps ORDER BY trajectory_id, step").to_pylist()}


@pytest.mark.parametrize("with_manifest", [True, False])
def test_migrate_converts_a_format_1_cache(corpus: Path, tiny_checkpoint: Path, with_manifest: bool) -> None:
    """Format-1 replays (token rows only, one file per trajectory and table, with or without the first manifests):
    left out of the views with the upgrade named, then converted by `migrate` into what a replay writes now."""
    from horizonlens.bench.shape import format1_table

    loaded = load_checkpoint(tiny_checkpoint)
    store = open_store(corpus)
    tids = store.query("SELECT trajectory_id FROM trajectories ORDER BY n_tokens LIMIT 3").column(0).to_pylist()
    results = [replay_trajectory(loaded, tid, store.steps(tid).to_pylist(), ReplayConfig(chunk_size=256))
               for tid in tids]
    # the reference: the same replays written by the current code, in a copy of the corpus
    current = Path(shutil.copytree(corpus, corpus.parent / "current"))
    ReplayCache(current, loaded.checkpoint_id).write(results)
    write_format1_cache(corpus, loaded.checkpoint_id,
                        {r.trajectory_id: {"steps": r.step_table(), "routing": format1_table(r)} for r in results},
                        notes={r.trajectory_id: {"template": r.rendered.template} for r in results},
                        manifest=with_manifest)
    old = open_store(corpus)  # the corpus opens; the old cache is left out and the upgrade named
    assert old.replay_checkpoints == [] and any("horizonlens migrate" in p for p in old.problems), old.problems
    refused = CliRunner().invoke(app, ["compact", str(corpus)])
    assert refused.exit_code == 1 and "horizonlens migrate" in refused.output
    result = CliRunner().invoke(app, ["migrate", str(corpus), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["caches"][0]
    assert report["trajectories"] == report["converted"] == 3
    assert report["files_before"] == 6 and report["files_after"] == 4
    assert set(report["tables_after"]) == {"steps", "routing_steps", "routing_segments", "routing_tokens"}
    after, want = _view_results(corpus), _view_results(current)
    # the step tier and the sets are exact; weights went through float16 in format 1, so compare what is exact
    for key in ("tids", "problems", "segments", "domains", "steps", "sets", "replay_steps", "coact"):
        assert after[key] == want[key], key
    cache = ReplayCache(corpus, loaded.checkpoint_id)
    tid = tids[0]
    assert cache.has(tid, tokens=True) and cache.read_notes(tid)["routing"] == "tokens"
    assert cache.read_notes(tid)["template"] == results[0].rendered.template  # notes kept, wherever they were
    assert not list((corpus / "replays").glob("*/routing/*.parquet"))  # the format-1 files are gone
    again = CliRunner().invoke(app, ["migrate", str(corpus)])
    assert again.exit_code == 0 and "nothing to do" in again.output


def test_compact_merges_small_files_losslessly(corpus: Path, tiny_checkpoint: Path) -> None:
    runner = CliRunner()
    args = ["replay", str(corpus), "--checkpoint", str(tiny_checkpoint), "--limit", "3", "--chunk-size", "256",
            "--batch-tokens", "1"]
    assert runner.invoke(app, args).exit_code == 0  # batches of one: one commit, one file per table, per trajectory
    ckpt = load_checkpoint(tiny_checkpoint).checkpoint_id
    files = sorted((corpus / "replays" / ckpt).glob("*/*.parquet"))
    assert len(files) == 3 * 5  # steps, two step-tier tables, token routing, token surprisal
    before = _view_results(corpus)
    weights = open_store(corpus).query("SELECT trajectory_id, token_index, layer, weights, margin, entropy "
                                       "FROM routing ORDER BY ALL").to_pylist()
    result = runner.invoke(app, ["compact", str(corpus)])
    assert result.exit_code == 0 and "15 files" in result.output and "-> 5 files" in result.output
    assert _view_results(corpus) == before
    assert open_store(corpus).query("SELECT trajectory_id, token_index, layer, weights, margin, entropy "
                                    "FROM routing ORDER BY ALL").to_pylist() == weights  # copied, not re-quantized
    again = runner.invoke(app, args)
    assert "replayed 0, already cached 3" in again.output  # the manifest still knows what is done


def test_compact_failure_leaves_the_cache_as_it_was(corpus: Path, tiny_checkpoint: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["replay", str(corpus), "--checkpoint", str(tiny_checkpoint), "--limit", "2",
                               "--batch-tokens", "1"]).exit_code == 0
    ckpt = load_checkpoint(tiny_checkpoint).checkpoint_id
    manifest = (corpus / "replays" / ckpt / "manifest.json").read_text()
    victim = sorted((corpus / "replays" / ckpt).glob("routing_tokens/*.parquet"))[-1]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated, as by a full disk
    result = runner.invoke(app, ["compact", str(corpus)])
    assert result.exit_code == 1 and str(victim.name) in result.output
    assert (corpus / "replays" / ckpt / "manifest.json").read_text() == manifest
    assert len(list((corpus / "replays" / ckpt).glob("*/*.parquet"))) == 2 * 5  # nothing written, nothing deleted
    assert runner.invoke(app, ["compact", str(corpus), "--checkpoint-id", "nope"]).exit_code == 1


def test_a_rollout_source_lands_beside_the_replay(corpus: Path, tiny_checkpoint: Path) -> None:
    """A second source of routing for the same checkpoint: importing it keeps the replay, replaying keeps it."""
    loaded = load_checkpoint(tiny_checkpoint)
    store = open_store(corpus)
    tid = store.list_trajectories(sort="n_tokens", limit=1).rows["trajectory_id"][0].as_py()
    steps = store.steps(tid).to_pylist()
    result = replay_trajectory(loaded, tid, steps, ReplayConfig(max_tokens=200))
    cache = ReplayCache(corpus, loaded.checkpoint_id)
    cache.write([result])
    layers = sorted(result.routing)
    engine = np.stack([result.routing[layer].experts.numpy() for layer in layers], axis=1)[:, :, ::-1]
    rollout = rf.token_table(tid, layers, engine, None, None, None, loaded.num_experts, source="rollout",
                             steps=result.rendered.steps[:200], segments=result.rendered.segments[:200],
                             token_ids=result.rendered.token_ids[:200])
    cache.write_rollouts([({tid: {"rollout_tokens": rollout}}, {})])
    store.refresh_replays()
    assert cache.has(tid, tokens=True)  # the replay is still whole
    counts = store.query("SELECT source, count(*) AS n FROM (SELECT source FROM routing UNION ALL "
                         "SELECT source FROM routing_rollout) GROUP BY 1 ORDER BY 1").to_pylist()
    assert counts == [{"source": "replay", "n": 200 * len(layers)}, {"source": "rollout", "n": 200 * len(layers)}]
    agree = store.query("SELECT avg(CAST(a.expert_set = b.expert_set AS DOUBLE)) AS same_set, "
                        "avg(CAST(a.top1_expert = b.top1_expert AS DOUBLE)) AS same_top1 FROM routing a "
                        "JOIN routing_rollout b USING (trajectory_id, token_index, layer)").to_pylist()[0]
    assert agree["same_set"] == 1.0 and agree["same_top1"] < 1.0  # same sets; the engine listed them reversed
    # replaying again with the step tier only removes the replay's token rows, not the rollout's
    cache.write([replay_trajectory(loaded, tid, steps, ReplayConfig(max_tokens=200, routing="steps"))])
    store.refresh_replays()
    assert store.scalar("SELECT count(*) FROM routing") == 0
    assert store.scalar("SELECT count(*) FROM routing_rollout") == 200 * len(layers)


def test_readers_equal_a_direct_computation_from_full_precision_routing(shapes, corpus: Path) -> None:
    """Every routing reader, on a replay stored in the two tiers, against numpy over the in-memory replay."""
    loaded = load_checkpoint(shapes["agents-a1"])
    store = open_store(corpus)
    tid = store.list_trajectories(sort="n_tokens", descending=True, limit=1).rows["trajectory_id"][0].as_py()
    result = replay_trajectory(loaded, tid, store.steps(tid).to_pylist(), ReplayConfig(max_tokens=TOKENS))
    ReplayCache(corpus, loaded.checkpoint_id).write([result])
    store.refresh_replays()
    ckpt, layers = loaded.checkpoint_id, sorted(result.routing)
    experts = np.stack([result.routing[layer].experts.numpy() for layer in layers], 1).astype(np.int64)  # (N, L, k)
    weights = np.stack([result.routing[layer].weights.numpy() for layer in layers], 1)
    segments, token_steps = result.rendered.segments[:TOKENS], result.rendered.steps[:TOKENS]
    E = loaded.num_experts

    seg = routing.expert_load(store, ckpt, "segment").set_index(["layer", "group", "expert"])["assignments"]
    for li, layer in enumerate(layers):
        for name in np.unique(segments):
            want = np.bincount(experts[segments == name, li].ravel(), minlength=E)
            assert seg.loc[(layer, name)].tolist() == want.tolist()

    load = routing.step_expert_load(store, ckpt, tid).set_index(["step", "layer", "expert"])["assignments"]
    step = int(np.unique(token_steps)[len(np.unique(token_steps)) // 2])
    panel = routing.step_layer_load(store, ckpt, tid, step).set_index(["layer", "expert"])
    for li, layer in enumerate(layers):
        ids, counts = np.unique(experts[token_steps == step, li], return_counts=True)
        assert load.loc[(step, layer)].index.tolist() == ids.tolist() and load.loc[(step, layer)].tolist() == \
            counts.tolist()
        assert panel.loc[layer]["assignments"].tolist() == counts.tolist()
        assert panel.loc[layer]["share"].sum() == pytest.approx(1.0)

    co = routing.coactivation(store, ckpt, layers[-1]).set_index(["i", "j"])
    sets = experts[:, -1]
    for i, j in [(int(a), int(b)) for a, b in co.index[:25]]:
        n_i = int((sets == i).any(1).sum())
        n_ij = int(((sets == i).any(1) & (sets == j).any(1)).sum())
        assert (co.loc[(i, j), "n_i"], co.loc[(i, j), "n_ij"]) == (n_i, n_ij)

    consecutive = routing.consecutive_same_expert(store, ckpt).set_index("layer")
    top1 = np.take_along_axis(experts, np.argmax(weights, -1)[..., None], -1)[..., 0]  # (N, L)
    for li, layer in enumerate(layers):
        assert consecutive.loc[layer, "pairs"] == TOKENS - 1
        assert consecutive.loc[layer, "same_top1"] == pytest.approx((top1[1:, li] == top1[:-1, li]).mean())
        overlap = [bool(set(experts[t, li]) & set(experts[t - 1, li])) for t in range(1, TOKENS)]
        assert consecutive.loc[layer, "any_overlap"] == pytest.approx(np.mean(overlap))
        p = np.bincount(top1[:, li]) / TOKENS
        assert consecutive.loc[layer, "random_baseline_top1"] == pytest.approx(float((p * p).sum()))

    usage = routing.layer_usage(store, ckpt).set_index("layer")
    for li, layer in enumerate(layers):
        counts = np.bincount(experts[:, li].ravel(), minlength=E)
        assert usage.loc[layer, "unused_experts"] == int((counts == 0).sum())
        assert usage.loc[layer, "imbalance"] == pytest.approx(counts.max() / counts.mean())
