"""Tiny random MoE checkpoints of several architectures, built and saved locally (no downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

VOCAB = 512
COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=0, bos_token_id=None,
              eos_token_id=None, tie_word_embeddings=False)


def configs() -> dict[str, Any]:
    import transformers as tf

    return {
        "mixtral": tf.MixtralConfig(**COMMON, num_local_experts=8, num_experts_per_tok=2),
        # a dense middle layer (mlp_only_layers): routing must map to real layer numbers 0 and 2
        "qwen2_moe": tf.Qwen2MoeConfig(**COMMON, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                                       shared_expert_intermediate_size=64, mlp_only_layers=[1]),
        "qwen3_moe": tf.Qwen3MoeConfig(**COMMON, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                                       head_dim=16),
        "qwen3_5_moe": tf.Qwen3_5MoeTextConfig(**COMMON, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                                               shared_expert_intermediate_size=64, head_dim=16,
                                               layer_types=["linear_attention", "linear_attention", "full_attention"],
                                               linear_num_value_heads=4, linear_num_key_heads=2,
                                               linear_key_head_dim=16, linear_value_head_dim=16),
        "olmoe": tf.OlmoeConfig(**COMMON, num_experts=8, num_experts_per_tok=2),
        "deepseek_v3": tf.DeepseekV3Config(**{**COMMON, "num_key_value_heads": 4}, n_routed_experts=8,
                                           num_experts_per_tok=2, moe_intermediate_size=32, n_shared_experts=1,
                                           first_k_dense_replace=1, n_group=2, topk_group=1,
                                           kv_lora_rank=16, q_lora_rank=None, qk_rope_head_dim=8, qk_nope_head_dim=8,
                                           v_head_dim=16, rope_scaling=None),
        "gpt_oss": tf.GptOssConfig(**COMMON, num_local_experts=8, num_experts_per_tok=2, head_dim=16, sliding_window=64,
                                   layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
        "granitemoe": tf.GraniteMoeConfig(**COMMON, num_local_experts=8, num_experts_per_tok=2),
    }


# Layers that have a router in each tiny config (dense layers have none).
MOE_LAYERS = {"qwen2_moe": [0, 2], "deepseek_v3": [1, 2]}


def build(arch: str, out: Path, tokenizer: Any, seed: int = 0) -> Path:
    """Build a random tiny model of `arch`, perturb it so routing is non-trivial, save with the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(configs()[arch])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 1 and ("gate" in name or "router" in name or "bias" in name):
                p.normal_(0, 0.5)  # zero-initialised routers would tie every expert
        for name, buf in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                buf.copy_(torch.linspace(-0.3, 0.3, buf.numel()))  # non-zero: top-k differs from logits' top-k
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def record_expert_inputs(loaded: Any, run: Any) -> tuple[Any, dict[int, tuple[Any, Any]], dict[int, Any]]:
    """Run `run()` recording, per MoE layer, what the experts module received and the router's raw scores.

    The independent source the capture is checked against: (top_k_index, top_k_weights as float) as the experts
    module's forward gets them, concatenated over calls, and the router's first output. Returns
    (run's result, {layer: (index, weights)}, {layer: logits}) as torch tensors.
    """
    import torch

    seen: dict[int, list[Any]] = {}
    logits: dict[int, list[Any]] = {}
    handles = []
    for site in loaded.routers:
        parent = loaded.model.get_submodule(site.name.rsplit(".", 1)[0])

        def pre_hook(module: Any, args: Any, layer: int = site.layer) -> None:
            seen.setdefault(layer, []).append((args[1].detach().clone(), args[2].detach().float().clone()))

        def router_hook(module: Any, args: Any, output: Any, layer: int = site.layer) -> None:
            out = output[0] if isinstance(output, tuple) else output
            logits.setdefault(layer, []).append(out.detach().float().clone())

        handles += [parent.experts.register_forward_pre_hook(pre_hook), site.module.register_forward_hook(router_hook)]
    try:
        result = run()
    finally:
        for h in handles:
            h.remove()
    inputs = {layer: (torch.cat([i for i, _ in v]), torch.cat([w for _, w in v])) for layer, v in seen.items()}
    return result, inputs, {layer: torch.cat(v) for layer, v in logits.items()}
