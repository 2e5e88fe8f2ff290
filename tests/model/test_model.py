"""The replay engine on tiny random checkpoints of eight MoE architectures, saved and reloaded from disk."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from horizonlens.model.capture import capture_routing  # noqa: E402
from horizonlens.model.loader import CheckpointError, NotMoEError, checkpoint_id, load_checkpoint  # noqa: E402
from horizonlens.model.replay import ReplayConfig, continue_from, replay_trajectory  # noqa: E402
from tests.support.model_zoo import MOE_LAYERS, build, configs, record_expert_inputs  # noqa: E402

pytestmark = pytest.mark.model
ARCHS = sorted(configs())


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer):
    return tiny_tokenizer


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("zoo")
    return {arch: build(arch, root / arch, tokenizer) for arch in ARCHS}


@pytest.fixture(scope="module")
def trajectory(tiny_corpus: Path) -> tuple[str, list[dict]]:
    import pyarrow.parquet as pq

    steps = [s for s in pq.read_table(tiny_corpus / "steps").to_pylist()]
    tid = next(s["trajectory_id"] for s in steps if s["trajectory_id"].startswith("engineering"))
    return tid, [s for s in steps if s["trajectory_id"] == tid]


@pytest.mark.parametrize("arch", ARCHS)
def test_capture_matches_what_the_experts_receive(zoo, arch: str) -> None:
    """The independent source: the (top_k_index, top_k_weights) arguments the experts module gets."""
    loaded = load_checkpoint(zoo[arch])
    assert [r.layer for r in loaded.routers] == MOE_LAYERS.get(arch, [0, 1, 2])
    ids = torch.randint(1, 480, (1, 37))

    def run() -> dict:
        with capture_routing(loaded) as rec, torch.inference_mode():
            loaded.model(input_ids=ids)
            return rec.take()

    captured, seen, _ = record_expert_inputs(loaded, run)
    assert set(captured) == set(seen)
    for layer, (index, weights) in seen.items():
        assert torch.equal(captured[layer].experts.long(), index.long()), (arch, layer)
        assert torch.allclose(captured[layer].weights, weights.float(), atol=1e-6), (arch, layer)
        ent = captured[layer].entropy
        assert ent.shape == (37,) and bool((ent >= 0).all()) and bool((ent <= np.log(8) + 1e-4).all())


def test_deepseek_topk_is_not_logits_topk(zoo) -> None:
    """With a non-zero correction bias and group limits, top-k of raw logits would be wrong."""
    loaded = load_checkpoint(zoo["deepseek_v3"])
    ids = torch.randint(1, 480, (1, 200))
    with capture_routing(loaded, keep_logits=True) as rec, torch.inference_mode():
        loaded.model(input_ids=ids)
        logits = {layer: torch.cat(v) for layer, v in rec.logits.items()}
        captured = rec.take()
    layer = loaded.routers[0].layer
    naive = torch.topk(logits[layer], 2, dim=-1).indices.sort(-1).values
    real = captured[layer].experts.long().sort(-1).values
    assert (naive != real).any(dim=-1).float().mean() > 0.05


@pytest.mark.parametrize("arch", ARCHS)
def test_chunked_replay_equals_one_forward(zoo, trajectory, arch: str) -> None:
    tid, steps = trajectory
    loaded = load_checkpoint(zoo[arch])
    full = replay_trajectory(loaded, tid, steps, ReplayConfig(chunk_size=100_000, max_tokens=900))
    chunked = replay_trajectory(loaded, tid, steps, ReplayConfig(chunk_size=61, max_tokens=900))
    assert full.n_replayed == chunked.n_replayed == 900
    for layer in full.routing:
        a = full.routing[layer].experts.long().sort(-1).values
        b = chunked.routing[layer].experts.long().sort(-1).values
        assert torch.equal(a, b), (arch, layer)
    np.testing.assert_allclose(full.surprisal[1:], chunked.surprisal[1:], atol=1e-4)
    assert np.isnan(full.surprisal[0]) and not np.isnan(full.surprisal[1:]).any()
    np.testing.assert_array_equal(full.top1, chunked.top1)


def test_surprisal_is_the_recorded_tokens_nll(zoo, trajectory) -> None:
    tid, steps = trajectory
    loaded = load_checkpoint(zoo["qwen3_moe"])
    result = replay_trajectory(loaded, tid, steps, ReplayConfig(max_tokens=120))
    ids = torch.as_tensor(result.rendered.token_ids[:120])[None]
    with torch.inference_mode():
        logp = torch.log_softmax(loaded.model(input_ids=ids).logits[0].float(), -1)
    expected = -logp[:-1].gather(1, ids[0, 1:, None])[:, 0].numpy()
    np.testing.assert_allclose(result.surprisal[1:], expected, atol=1e-4)


def test_step_and_routing_tables(zoo, trajectory) -> None:
    tid, steps = trajectory
    loaded = load_checkpoint(zoo["qwen2_moe"])
    result = replay_trajectory(loaded, tid, steps, ReplayConfig(max_tokens=10_000))
    table = result.step_table().to_pylist()
    assert [r["step"] for r in table] == [s["step"] for s in steps]
    agent_rows = [r for r, s in zip(table, steps, strict=True) if s["source"] == "agent" and not r["truncated"]]
    assert len(agent_rows) > 10
    assert all(r["n_scored"] > 0 and r["surprisal"] > 0 for r in agent_rows)
    assert all(r["surprisal"] is None for r, s in zip(table, steps, strict=True) if s["source"] in ("system", "user"))
    routing = result.routing_table()
    assert routing.num_rows == result.n_replayed * 2  # two MoE layers (layer 1 is dense)
    assert result.n_replayed == 4096 and result.truncated  # the tiny model's context (4096) is the limit
    assert set(routing["layer"].to_pylist()) == {0, 2}
    assert all(len(e) == 2 for e in routing["experts"].to_pylist()[:50])
    segments = {"system", "user", "reasoning", "tool_call", "observation", "template"}
    assert set(routing["segment"].to_pylist()) >= segments


def test_segments_map_back_to_text(tokenizer, trajectory) -> None:
    from horizonlens.model.render import render

    _, steps = trajectory
    rendered = render(tokenizer, steps)
    step = next(s for s in steps if s["source"] == "agent" and s["reasoning"])
    mask = (rendered.steps == step["step"]) & (rendered.segments == "reasoning")
    assert tokenizer.decode(rendered.token_ids[mask].tolist()) == step["reasoning"]
    mask = (rendered.steps == step["step"]) & (rendered.segments == "observation")
    assert tokenizer.decode(rendered.token_ids[mask].tolist()) == step["observations"][0]["content"]
    assert rendered.scored.sum() == sum(((rendered.segments == s) & (rendered.steps >= 2)).sum()
                                        for s in ("reasoning", "message", "tool_call"))


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n"
    "{% if m['role'] == 'assistant' and loop.index0 >= messages|length - 4 and m.get('reasoning_content') %}"
    "<think>{{ m['reasoning_content'] }}</think>{% endif %}"
    "{{ m['content'] }}{% for c in m.get('tool_calls', []) %}<tool_call>{{ c['function']['name'] }} "
    "{{ c['function']['arguments'] | tojson }}</tool_call>{% endfor %}\n{% endfor %}")


def test_chat_template_rendering_maps_segments_and_reports_drops(tokenizer, trajectory) -> None:
    from horizonlens.model.render import render

    _, steps = trajectory
    tokenizer.chat_template = CHAT_TEMPLATE
    try:
        rendered = render(tokenizer, steps)
    finally:
        tokenizer.chat_template = None
    assert rendered.template == "chat_template"
    # this template keeps reasoning only for the last turns: the rest is reported, not silently lost
    assert any("reasoning" in n for n in rendered.notes)
    obs_step = next(s for s in steps if s["observations"])
    mask = (rendered.steps == obs_step["step"]) & (rendered.segments == "observation")
    assert obs_step["observations"][0]["content"].strip()[:20] in tokenizer.decode(rendered.token_ids[mask].tolist())
    assert (rendered.segments == "tool_call").any() and rendered.scored.any()


def test_truncation_is_visible(zoo, trajectory) -> None:
    tid, steps = trajectory
    loaded = load_checkpoint(zoo["olmoe"])
    result = replay_trajectory(loaded, tid, steps, ReplayConfig(max_tokens=300))
    assert result.truncated and any("not replayed" in n for n in result.notes)
    rows = result.step_table().to_pylist()
    assert rows[-1]["truncated"] and rows[-1]["surprisal"] is None
    assert not rows[0]["truncated"]


def test_hooks_removed_even_on_error(zoo) -> None:
    loaded = load_checkpoint(zoo["mixtral"])
    with pytest.raises(RuntimeError, match="boom"):
        with capture_routing(loaded):
            assert all(r.module._forward_hooks for r in loaded.routers)
            raise RuntimeError("boom")
    assert not any(r.module._forward_hooks for r in loaded.routers)


def test_concurrent_replays_on_one_model_do_not_mix(zoo, trajectory) -> None:
    tid, steps = trajectory
    loaded = load_checkpoint(zoo["qwen3_5_moe"])
    alone = replay_trajectory(loaded, tid, steps, ReplayConfig(max_tokens=400, chunk_size=50))
    results: list = [None] * 4

    def work(i: int) -> None:
        results[i] = replay_trajectory(loaded, tid, steps, ReplayConfig(max_tokens=400, chunk_size=50))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        for layer in alone.routing:
            assert torch.equal(r.routing[layer].experts, alone.routing[layer].experts)
        np.testing.assert_allclose(r.surprisal, alone.surprisal, atol=1e-5, equal_nan=True)


def test_continue_from_a_step(zoo, trajectory) -> None:
    tid, steps = trajectory
    loaded = load_checkpoint(zoo["qwen3_moe"])
    step = next(s["step"] for s in steps if s["source"] == "agent")
    a = continue_from(loaded, steps, step, max_new_tokens=12)
    b = continue_from(loaded, steps, step, max_new_tokens=12)
    assert a.generated == b.generated and a.generated  # greedy is deterministic
    assert steps[step]["reasoning"][:30] in a.recorded
    sampled = continue_from(loaded, steps, step, max_new_tokens=12, do_sample=True, seed=3)
    assert sampled.settings["do_sample"] is True
    with pytest.raises(ValueError, match="no agent-written"):
        continue_from(loaded, steps, 0)


def test_loader_errors(tmp_path: Path, zoo, tokenizer) -> None:
    with pytest.raises(CheckpointError, match="not a directory"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_checkpoint(tmp_path / "empty")
    pickled = tmp_path / "pickled"
    shutil.copytree(zoo["mixtral"], pickled)
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(pickled)
    remote = tmp_path / "remote"
    shutil.copytree(zoo["mixtral"], remote)
    cfg = json.loads((remote / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.Evil"}
    (remote / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="trust-remote-code"):
        load_checkpoint(remote)
    notok = tmp_path / "notok"
    shutil.copytree(zoo["mixtral"], notok)
    (notok / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer"):
        load_checkpoint(notok)


def test_vocab_mismatch_and_dense_model(tmp_path: Path, tokenizer) -> None:
    import transformers as tf

    small = tf.MixtralConfig(vocab_size=100, hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1, num_local_experts=4, num_experts_per_tok=2)
    tf.AutoModelForCausalLM.from_config(small).save_pretrained(tmp_path / "small")
    tokenizer.save_pretrained(tmp_path / "small")
    with pytest.raises(CheckpointError, match="tokenizer has 480 tokens but the model's embedding has only 100"):
        load_checkpoint(tmp_path / "small")
    dense = tf.LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1)
    tf.AutoModelForCausalLM.from_config(dense).save_pretrained(tmp_path / "dense")
    tokenizer.save_pretrained(tmp_path / "dense")
    with pytest.raises(NotMoEError, match="allow-dense"):
        load_checkpoint(tmp_path / "dense")
    loaded = load_checkpoint(tmp_path / "dense", allow_dense=True)
    result = replay_trajectory(loaded, "x", [{"step": 0, "source": "agent", "reasoning": "hello there",
                                              "tool_calls": [], "observations": []}])
    assert not result.routing and result.step_table().to_pylist()[0]["surprisal"] > 0


def test_multimodal_checkpoint_loads_text_only(tmp_path: Path, tokenizer) -> None:
    import transformers as tf
    from safetensors import safe_open

    text = configs()["qwen3_5_moe"]
    vision = dict(depth=1, hidden_size=32, intermediate_size=32, num_heads=2, out_hidden_size=64)
    tf.Qwen3_5MoeForConditionalGeneration(tf.Qwen3_5MoeConfig(text_config=text.to_dict(), vision_config=vision)) \
        .save_pretrained(tmp_path / "mm")
    tokenizer.save_pretrained(tmp_path / "mm")
    loaded = load_checkpoint(tmp_path / "mm")
    assert loaded.architecture == "Qwen3_5MoeForConditionalGeneration"
    assert type(loaded.model).__name__ == "Qwen3_5MoeForCausalLM" and len(loaded.routers) == 3
    with safe_open(str(tmp_path / "mm" / "model.safetensors"), "pt") as f:
        w = f.get_tensor("model.language_model.layers.0.mlp.gate.weight")
    assert torch.equal(w, loaded.model.model.layers[0].mlp.gate.weight.detach())


def test_checkpoint_id_changes_with_weights(tmp_path: Path, zoo) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(zoo["granitemoe"], copy)
    assert checkpoint_id(copy) == checkpoint_id(zoo["granitemoe"])  # a copy is the same checkpoint
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    assert checkpoint_id(copy) != checkpoint_id(zoo["granitemoe"])
