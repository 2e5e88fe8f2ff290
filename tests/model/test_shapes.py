"""Shape fixtures: small versions of real MoE topologies, built, saved, loaded and replayed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from horizonlens.cli import app  # noqa: E402
from horizonlens.errors import CheckpointError  # noqa: E402
from horizonlens.model.capture import capture_routing  # noqa: E402
from horizonlens.model.loader import load_checkpoint  # noqa: E402
from horizonlens.model.replay import ReplayConfig, replay_trajectory  # noqa: E402
from horizonlens.model.shapes import SHAPES, build_shape, resolve  # noqa: E402
from tests.support.model_zoo import record_expert_inputs  # noqa: E402

pytestmark = pytest.mark.model

# (layers, experts) of the small version of each shape, and the routers the loader must then report
SMALL = {"agents-a1": (4, 32), "qwen3-30b-a3b": (3, 32), "deepseek-v3": (5, 32), "gpt-oss-120b": (3, 32)}
EXPECTED = {  # moe layers, experts, top-k, architecture
    "agents-a1": ([0, 1, 2, 3], 32, 8, "Qwen3_5MoeForCausalLM"),
    "qwen3-30b-a3b": ([0, 1, 2], 32, 8, "Qwen3MoeForCausalLM"),
    "deepseek-v3": ([3, 4], 32, 8, "DeepseekV3ForCausalLM"),
    "gpt-oss-120b": ([0, 1, 2], 32, 4, "GptOssForCausalLM"),
}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shapes")
    for name, (layers, experts) in SMALL.items():
        build_shape(name, root / name, tiny_tokenizer, layers=layers, experts=experts, seed=3)
    return {name: root / name for name in SMALL}


@pytest.fixture(scope="module")
def trajectory(tiny_corpus: Path) -> tuple[str, list[dict]]:
    import pyarrow.parquet as pq

    steps = pq.read_table(tiny_corpus / "steps").to_pylist()
    tid = next(s["trajectory_id"] for s in steps if s["trajectory_id"].startswith("search"))
    return tid, [s for s in steps if s["trajectory_id"] == tid]


def test_full_sizes_are_the_real_topologies() -> None:
    got = {n: (s.layers, s.layers - s.dense_first, s.experts, s.top_k) for n, s in SHAPES.items()}
    assert got == {"agents-a1": (40, 40, 256, 8), "qwen3-30b-a3b": (48, 48, 128, 8),
                   "deepseek-v3": (61, 58, 256, 8), "gpt-oss-120b": (36, 36, 128, 4)}
    ds = SHAPES["deepseek-v3"]
    assert (ds.dense_first, ds.n_group, ds.topk_group) == (3, 8, 4)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_loader_reports_the_topology(shapes: dict[str, Path], name: str) -> None:
    loaded = load_checkpoint(shapes[name])
    layers, experts, top_k, arch = EXPECTED[name]
    assert [r.layer for r in loaded.routers] == layers  # real layer numbers: dense layers have no router
    assert loaded.num_experts == experts and loaded.top_k == top_k
    assert {r.num_experts for r in loaded.routers} == {experts} and {r.top_k for r in loaded.routers} == {top_k}
    assert type(loaded.model).__name__ == arch
    info = json.loads((shapes[name] / "shape.json").read_text())
    assert info["routers"] == "untrained" and "UNTRAINED" in info["note"] and "TOPOLOGY" in info["note"]
    assert info["moe_layers"] == layers and info["parameters"] == loaded.describe()["parameters"]
    assert len(loaded.tokenizer) <= loaded.model.get_input_embeddings().weight.shape[0]


def test_attention_patterns_and_routing_kinds(shapes: dict[str, Path]) -> None:
    a1 = load_checkpoint(shapes["agents-a1"]).model.config
    assert a1.layer_types == ["linear_attention"] * 3 + ["full_attention"]
    assert a1.shared_expert_intermediate_size > 0
    oss = load_checkpoint(shapes["gpt-oss-120b"]).model.config
    assert oss.layer_types == ["sliding_attention", "full_attention", "sliding_attention"]
    ds = load_checkpoint(shapes["deepseek-v3"])
    assert [r.scoring for r in ds.routers] == ["sigmoid", "sigmoid"]
    assert (ds.model.config.n_group, ds.model.config.topk_group, ds.model.config.first_k_dense_replace) == (8, 4, 3)
    for layer in range(3):  # the dense first layers have a plain MLP, no experts
        assert not hasattr(ds.model.model.layers[layer].mlp, "experts")
    bias = ds.routers[0].module.e_score_correction_bias
    assert float(bias.abs().max()) > 0.05 and len(set(bias.tolist())) == bias.numel()


def _with_oracle(loaded, run):  # noqa: ANN001, ANN202
    """`record_expert_inputs`, keeping of the experts module's inputs the top_k_index it got."""
    result, seen, logits = record_expert_inputs(loaded, run)
    return result, {layer: index for layer, (index, _) in seen.items()}, logits


@pytest.mark.parametrize("name", sorted(SMALL))
def test_replay_stores_the_experts_actually_used(shapes: dict[str, Path], trajectory, name: str) -> None:
    tid, steps = trajectory
    loaded = load_checkpoint(shapes[name])
    layers, experts, top_k, _ = EXPECTED[name]
    result, seen, logits = _with_oracle(
        loaded, lambda: replay_trajectory(loaded, tid, steps, ReplayConfig(max_tokens=400, chunk_size=97)))
    assert result.n_replayed == 400 and sorted(result.routing) == layers == sorted(seen)
    for layer in layers:
        stored = result.routing[layer].experts.long()
        assert stored.shape == (400, top_k)
        assert torch.equal(stored, seen[layer].long()), (name, layer)
        # routers were perturbed: many experts are in use, not the first k by index
        assert len(torch.unique(stored)) > experts // 2
    table = result.routing_table()
    assert table.num_rows == 400 * len(layers) and set(table["layer"].to_pylist()) == set(layers)
    if name == "deepseek-v3":  # biased, group-limited routing: the top-k of the raw scores is not what was used
        for layer in layers:
            plain = torch.topk(logits[layer], top_k, dim=-1).indices.sort(-1).values
            used = seen[layer].long().sort(-1).values
            assert (plain != used).any(-1).float().mean() > 0.2, layer
            groups = used // (experts // 8)  # experts per group: every token stays within 4 of 8 groups
            assert max(len(set(row.tolist())) for row in groups) <= 4


def test_capture_matches_a_single_forward_for_every_shape(shapes: dict[str, Path]) -> None:
    for name in SMALL:
        loaded = load_checkpoint(shapes[name])
        ids = torch.randint(1, 400, (1, 53), generator=torch.Generator().manual_seed(1))

        def run(loaded=loaded, ids=ids) -> dict:  # noqa: ANN001
            with capture_routing(loaded) as rec, torch.inference_mode():
                loaded.model(input_ids=ids)
                return rec.take()

        captured, seen, _ = _with_oracle(loaded, run)
        for layer, index in seen.items():
            assert torch.equal(captured[layer].experts.long(), index.long()), (name, layer)


def test_same_seed_same_checkpoint(tmp_path: Path, tiny_tokenizer) -> None:
    from safetensors.numpy import load_file

    a = build_shape("gpt-oss-120b", tmp_path / "a", tiny_tokenizer, layers=2, experts=8, seed=5)
    b = build_shape("gpt-oss-120b", tmp_path / "b", tiny_tokenizer, layers=2, experts=8, seed=5)
    build_shape("gpt-oss-120b", tmp_path / "c", tiny_tokenizer, layers=2, experts=8, seed=6)
    assert a == b and a["seed"] == 5
    wa, wb, wc = (load_file(str(tmp_path / x / "model.safetensors")) for x in "abc")
    key = "model.layers.0.mlp.router.weight"
    np.testing.assert_array_equal(wa[key], wb[key])
    assert not np.array_equal(wa[key], wc[key])


def test_bad_shapes_are_refused(tmp_path: Path, tiny_tokenizer) -> None:
    with pytest.raises(CheckpointError, match="unknown shape 'mixtral'"):
        resolve("mixtral")
    with pytest.raises(CheckpointError, match="multiple of 8"):
        resolve("deepseek-v3", experts=36)
    with pytest.raises(CheckpointError, match="more than that"):
        resolve("deepseek-v3", layers=3)
    with pytest.raises(CheckpointError, match="at least that"):
        resolve("gpt-oss-120b", experts=2)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not empty"):
        build_shape("qwen3-30b-a3b", busy, tiny_tokenizer, layers=2, experts=8)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_cli_builds_a_shape(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "ds"
    result = runner.invoke(app, ["build-checkpoint", str(out), "--shape", "deepseek-v3", "--random-init",
                                 "--layers", "4", "--experts", "16", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert "UNTRAINED" in result.output
    loaded = load_checkpoint(out)
    assert [r.layer for r in loaded.routers] == [3] and loaded.num_experts == 16 and loaded.top_k == 8
    assert (out / "tokenizer.json").exists() and json.loads((out / "shape.json").read_text())["seed"] == 2
    refused = runner.invoke(app, ["build-checkpoint", str(tmp_path / "x"), "--shape", "agents-a1"])
    assert refused.exit_code == 1 and "--random-init" in refused.output
    bad = runner.invoke(app, ["build-checkpoint", str(tmp_path / "y"), "--shape", "nope", "--random-init"])
    assert bad.exit_code == 1 and "unknown shape" in bad.output and not (tmp_path / "y").exists()
