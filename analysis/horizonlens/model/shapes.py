"""Shape fixtures: random-init checkpoints with the routing topology of real MoE releases.

Every routing table and figure must hold up at the shape people actually run (Agents-A1: 40 layers
x 256 experts top-8), not only at the bundled 4 x 16. These checkpoints have the real *topology*
(layer count, dense layers, attention pattern, expert count, top-k, grouped and biased routing,
shared experts) at a hidden size small enough for a CPU. Their routers are *untrained* (random weights,
perturbed with a fixed seed so routing is not a tie): they say nothing about what a trained model routes
where, and each checkpoint's `shape.json` says so too.

A shape can be shrunk (`layers`, `experts`) for tests while keeping its kind of topology: DeepSeek-V3
keeps its three dense first layers and eight expert groups, Agents-A1 its 3 DeltaNet : 1 attention
pattern, GPT-OSS its alternating sliding/full attention.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from horizonlens.errors import CheckpointError

HIDDEN_SIZE = 64  # small enough for a CPU; the topology, not the width, is what the fixtures are for
MOE_INTERMEDIATE = 16  # per-expert FFN width: Agents-A1 at hidden 64 comes to ~33M parameters
ROUTER_LOGIT_STD = 1.0  # std of router logits for unit-RMS inputs: clear but not one-hot preferences
CORRECTION_BIAS = 0.1  # DeepSeek-V3 e_score_correction_bias spans [-this, +this] (shuffled by seed)
VOCAB_PADDING = 64  # embedding rows past the tokenizer: transformers may add a token on load
MAX_CONTEXT = 65536  # long enough for ~45k-token trajectories
NOTE = ("Random-init fixture: real routing TOPOLOGY ({topology}) but UNTRAINED routers (random weights "
        "perturbed with seed {seed}). Use it to exercise replay, routing storage and views at this shape; "
        "its routing says nothing about a trained model.")


@dataclass(frozen=True)
class Shape:
    """The routing topology of one real MoE release, at full size."""

    name: str
    release: str  # the model whose topology this mirrors
    family: str  # which transformers config builds it: qwen3_5_moe, qwen3_moe, deepseek_v3, gpt_oss
    layers: int  # decoder layers, dense ones included
    experts: int  # routed experts per MoE layer
    top_k: int
    dense_first: int = 0  # leading layers with a dense MLP and no router (DeepSeek first_k_dense_replace)
    n_group: int = 1  # expert groups for group-limited routing (DeepSeek-V3)
    topk_group: int = 1  # groups each token may route into
    shared_expert: bool = False


SHAPES: dict[str, Shape] = {s.name: s for s in (
    Shape("agents-a1", "Agents-A1 (Qwen3.5-35B-A3B): gated DeltaNet 3 : 1 gated attention, shared expert",
          "qwen3_5_moe", layers=40, experts=256, top_k=8, shared_expert=True),
    Shape("qwen3-30b-a3b", "Qwen3-30B-A3B", "qwen3_moe", layers=48, experts=128, top_k=8),
    Shape("deepseek-v3", "DeepSeek-V3: 3 dense layers, grouped sigmoid routing with a correction bias",
          "deepseek_v3", layers=61, experts=256, top_k=8, dense_first=3, n_group=8, topk_group=4,
          shared_expert=True),
    Shape("gpt-oss-120b", "GPT-OSS-120B: alternating sliding/full attention, router with bias",
          "gpt_oss", layers=36, experts=128, top_k=4),
)}


def resolve(name: str, layers: int | None = None, experts: int | None = None) -> Shape:
    """The named shape, optionally shrunk to `layers` decoder layers and `experts` routed experts."""
    if name not in SHAPES:
        raise CheckpointError(f"unknown shape {name!r}; choose one of: {', '.join(SHAPES)}")
    base = SHAPES[name]
    shape = Shape(**{**asdict(base), "layers": layers or base.layers, "experts": experts or base.experts})
    if shape.layers <= shape.dense_first:
        raise CheckpointError(f"{name} has {shape.dense_first} dense first layers: --layers must be more than that "
                              f"(got {shape.layers})")
    if shape.experts < shape.top_k:
        raise CheckpointError(f"{name} routes each token to {shape.top_k} experts: --experts must be at least that "
                              f"(got {shape.experts})")
    per_group = shape.experts // shape.n_group
    if shape.n_group > 1 and (shape.experts % shape.n_group or per_group < 2
                              or shape.topk_group * per_group < shape.top_k):
        least = max(2, math.ceil(shape.top_k / shape.topk_group)) * shape.n_group
        raise CheckpointError(f"{name} routes top-{shape.top_k} within {shape.topk_group} of {shape.n_group} expert "
                              f"groups: --experts must be a multiple of {shape.n_group} and at least {least} "
                              f"(got {shape.experts})")
    return shape


def moe_layers(shape: Shape) -> list[int]:
    """Real layer numbers that have a router."""
    return list(range(shape.dense_first, shape.layers))


def model_config(shape: Shape, vocab_size: int, hidden_size: int = HIDDEN_SIZE) -> Any:
    """The transformers config with this shape's topology at `hidden_size`."""
    import transformers as tf

    heads = 4
    common: dict[str, Any] = dict(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=shape.layers,
                                  num_attention_heads=heads, num_experts_per_tok=shape.top_k,
                                  max_position_embeddings=MAX_CONTEXT, tie_word_embeddings=False, pad_token_id=0,
                                  bos_token_id=None, eos_token_id=None)
    head_dim = hidden_size // heads
    if shape.family == "qwen3_5_moe":
        types = ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(shape.layers)]
        return tf.Qwen3_5MoeTextConfig(
            **common, num_key_value_heads=2, head_dim=head_dim, layer_types=types, linear_num_value_heads=heads,
            linear_num_key_heads=2, linear_key_head_dim=head_dim, linear_value_head_dim=head_dim,
            num_experts=shape.experts, moe_intermediate_size=MOE_INTERMEDIATE,
            shared_expert_intermediate_size=2 * hidden_size)
    if shape.family == "qwen3_moe":
        return tf.Qwen3MoeConfig(**common, num_key_value_heads=2, num_experts=shape.experts,
                                 moe_intermediate_size=MOE_INTERMEDIATE, intermediate_size=2 * hidden_size,
                                 norm_topk_prob=True)
    if shape.family == "deepseek_v3":
        return tf.DeepseekV3Config(
            **common, num_key_value_heads=heads, n_routed_experts=shape.experts, n_shared_experts=1,
            moe_intermediate_size=MOE_INTERMEDIATE, intermediate_size=2 * hidden_size,
            first_k_dense_replace=shape.dense_first, n_group=shape.n_group, topk_group=shape.topk_group,
            kv_lora_rank=hidden_size // 4, q_lora_rank=hidden_size // 2, qk_rope_head_dim=8, qk_nope_head_dim=8,
            v_head_dim=head_dim)
    if shape.family == "gpt_oss":
        types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(shape.layers)]
        return tf.GptOssConfig(**{**common, "max_position_embeddings": 131072}, num_key_value_heads=2,
                               head_dim=head_dim, num_local_experts=shape.experts, intermediate_size=MOE_INTERMEDIATE,
                               sliding_window=128, layer_types=types)
    raise CheckpointError(f"no config builder for family {shape.family!r}")


def perturb_routers(model: Any, seed: int) -> None:
    """Give every router random, seeded preferences (and DeepSeek a non-zero correction bias).

    Random init leaves routers at zero or near it, so every expert ties and top-k picks by index.
    Scaled so logits have std ROUTER_LOGIT_STD for unit-RMS inputs (the router reads a normed state).
    """
    import torch

    from horizonlens.model.routers import find_routers

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for site in find_routers(model):
            weight = cast("torch.Tensor", site.module.weight)
            std = ROUTER_LOGIT_STD / math.sqrt(weight.shape[1])
            weight.copy_(torch.randn(weight.shape, generator=gen) * std)
            bias = getattr(site.module, "bias", None)
            if isinstance(bias, torch.nn.Parameter):
                bias.copy_(torch.randn(bias.shape, generator=gen) * 0.1)
            correction = getattr(site.module, "e_score_correction_bias", None)
            if correction is not None:  # biased top-k then differs from top-k of the scores
                spread = torch.linspace(-CORRECTION_BIAS, CORRECTION_BIAS, correction.numel())
                correction.copy_(spread[torch.randperm(correction.numel(), generator=gen)])


def _save_tokenizer(tokenizer: Any, out: Path) -> int:
    """Save the tokenizer beside the weights; returns its size. `tokenizer`: a folder or a tokenizer object."""
    from horizonlens.model.files import check_folder
    from horizonlens.model.loader import TOKENIZER_FILES, load_tokenizer

    if isinstance(tokenizer, (str, Path)):
        source = Path(tokenizer)
        if not source.is_dir():
            raise CheckpointError(f"{source}: not a directory holding tokenizer files (tokenizer.json)")
        check_folder(source)  # only regular files of bounded size are copied: a FIFO or /dev/zero never is
        names = [n for n in TOKENIZER_FILES if (source / n).exists()]
        if not names:
            raise CheckpointError(f"{source}: no tokenizer files to copy (tokenizer.json)")
        for name in names:
            shutil.copy2(source / name, out / name)
        tokenizer = load_tokenizer(out)
    else:
        tokenizer.save_pretrained(str(out))
    return len(tokenizer)


def build_shape(name: str, out: Path | str, tokenizer: Any, layers: int | None = None, experts: int | None = None,
                seed: int = 0, hidden_size: int = HIDDEN_SIZE) -> dict[str, Any]:
    """Write a random-init checkpoint with the topology of shape `name` to `out`; returns what shape.json says.

    `tokenizer` is a folder holding tokenizer files (copied) or a tokenizer object (saved); the embedding
    gets room for all its tokens. The checkpoint appears at `out` complete or not at all.
    """
    import torch
    from transformers import AutoModelForCausalLM

    shape = resolve(name, layers, experts)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise CheckpointError(f"{out} exists and is not empty; choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".tmp-{out.name}-"))
    try:
        vocab = _save_tokenizer(tokenizer, staging)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(model_config(shape, vocab + VOCAB_PADDING, hidden_size))
        perturb_routers(model, seed)
        model.save_pretrained(str(staging))
        topology = (f"{shape.layers} layers, {len(moe_layers(shape))} with {shape.experts} experts top-{shape.top_k}"
                    + (f", {shape.dense_first} dense first" if shape.dense_first else "")
                    + (f", {shape.n_group} groups top-{shape.topk_group}" if shape.n_group > 1 else "")
                    + (", shared expert" if shape.shared_expert else ""))
        info = {**asdict(shape), "moe_layers": moe_layers(shape), "hidden_size": hidden_size,
                "parameters": sum(p.numel() for p in model.parameters()), "seed": seed,
                "architecture": type(model).__name__, "routers": "untrained",
                "note": NOTE.format(topology=topology, seed=seed)}
        (staging / "shape.json").write_text(json.dumps(info, indent=2) + "\n")
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return info
