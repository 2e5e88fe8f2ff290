"""`horizonlens build-checkpoint`: the bundled sample checkpoint, small enough to train on a CPU.

The Agents-A1 architecture in miniature: `Qwen3_5MoeForCausalLM` with three gated-DeltaNet
(linear attention) layers and one gated full-attention layer, 16 routed experts (top-2) plus a
shared expert, a byte-level BPE tokenizer trained on the sample corpus, trained on the corpus
rendered with the Horizon Lens template. Load balancing is a per-layer Switch-style loss: the
default auxiliary loss pools all layers, which lets individual layers collapse onto few experts.
Deterministic: a fixed seed and a fixed number of optimizer steps (never a time budget).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from horizonlens.errors import CorpusError
from horizonlens.metrics.info import entropy, mutual_information
from horizonlens.model.render import HORIZONLENS_CHAT_TEMPLATE, trajectory_text
from horizonlens.query.store import CorpusStore


@dataclass
class BuildConfig:
    """Size and training schedule of the sample checkpoint (docs/replay.md says what training it costs)."""

    vocab_size: int = 4096
    hidden_size: int = 160
    layers: int = 4  # pattern: 3 linear-attention layers then 1 full-attention layer
    experts: int = 16
    top_k: int = 2
    moe_intermediate: int = 96
    shared_intermediate: int = 192
    heads: int = 4
    max_context: int = 65536
    seq_len: int = 512
    batch_size: int = 8
    steps: int = 700
    lr: float = 2e-3
    balance_coef: float = 0.02  # weight of the per-layer load-balancing loss
    seed: int = 0
    tokenizer_docs: int = 1500  # trajectories used to train the tokenizer
    heldout_every: int = 10  # every 10th task is held out of training


def model_config(cfg: BuildConfig) -> Any:
    """The Qwen3.5-MoE text config of the sample checkpoint: Agents-A1's architecture in miniature."""
    from transformers import Qwen3_5MoeTextConfig

    types = ["linear_attention"] * (cfg.layers - 1) + ["full_attention"]
    return Qwen3_5MoeTextConfig(
        # embedding rows padded past the tokenizer: transformers may add a token (e.g. <|endoftext|>) on load
        vocab_size=cfg.vocab_size + 64, hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=2,
        head_dim=cfg.hidden_size // cfg.heads, layer_types=types, linear_num_value_heads=cfg.heads,
        linear_num_key_heads=2, linear_key_head_dim=32, linear_value_head_dim=32,
        num_experts=cfg.experts, num_experts_per_tok=cfg.top_k, moe_intermediate_size=cfg.moe_intermediate,
        shared_expert_intermediate_size=cfg.shared_intermediate, max_position_embeddings=cfg.max_context,
        router_aux_loss_coef=0.0, tie_word_embeddings=True, pad_token_id=0, bos_token_id=None, eos_token_id=None)


def split_ids(store: CorpusStore, every: int) -> tuple[list[str], list[str]]:
    """(training, held-out) trajectory ids: every `every`-th task is held out with all its trials."""
    rows = store.query("SELECT trajectory_id, task_id FROM trajectories ORDER BY trajectory_id").to_pylist()
    tasks = sorted({r["task_id"] for r in rows})
    held = {t for i, t in enumerate(tasks) if i % every == 0}
    train = [r["trajectory_id"] for r in rows if r["task_id"] not in held]
    heldout = [r["trajectory_id"] for r in rows if r["task_id"] in held]
    return train, heldout


def balance_loss(router_logits: tuple[Any, ...], top_k: int) -> Any:
    """Mean over layers of E * sum_e f_e * P_e (Switch Transformer), computed per layer."""
    import torch

    losses = []
    for logits in router_logits:
        probs = torch.softmax(logits.float(), dim=-1)  # (T, E)
        n_exp = probs.shape[-1]
        chosen = torch.topk(probs, top_k, dim=-1).indices
        frac = torch.zeros(n_exp).scatter_add_(0, chosen.reshape(-1), torch.ones(chosen.numel())) / chosen.numel()
        losses.append(n_exp * (frac.detach() * probs.mean(0)).sum())
    return torch.stack(losses).mean()


def _windows(streams: list[np.ndarray], seq_len: int, batch: int, rng: random.Random) -> np.ndarray:
    out = np.zeros((batch, seq_len + 1), dtype=np.int64)
    for b in range(batch):
        s = rng.choice(streams)
        start = rng.randint(0, max(0, len(s) - seq_len - 1))
        w = s[start:start + seq_len + 1]
        out[b, : len(w)] = w
    return out


def heldout_loss(model: Any, streams: list[np.ndarray], seq_len: int) -> float:
    """Mean next-token loss (nats) over fixed windows of held-out trajectories."""
    import torch

    total, count = 0.0, 0
    with torch.inference_mode():
        for s in streams:
            for start in range(0, max(1, len(s) - 1), seq_len):
                w = torch.as_tensor(s[start:start + seq_len + 1])[None, :]
                if w.shape[1] < 2:
                    continue
                logits = model(input_ids=w[:, :-1]).logits[0].float()
                total += float(torch.nn.functional.cross_entropy(logits, w[0, 1:], reduction="sum"))
                count += w.shape[1] - 1
    return total / max(1, count)


def routing_structure(model_dir: Path, store: CorpusStore, ids: list[str]) -> dict[str, Any]:
    """Per-layer expert-usage entropy and I(segment; top-1 expert), I(domain; top-1) on held-out replays."""
    from horizonlens.model.loader import load_checkpoint
    from horizonlens.model.replay import ReplayConfig, replay_trajectory

    loaded = load_checkpoint(model_dir, device="cpu")
    per_layer: dict[int, dict[str, list[Any]]] = {}
    for tid in ids:
        meta = store.trajectory(tid)
        if meta is None:
            raise CorpusError(f"held-out trajectory {tid} is not in the corpus")
        domain = meta["domain"]
        result = replay_trajectory(loaded, tid, store.steps(tid).to_pylist(), ReplayConfig(chunk_size=1024))
        for layer, rec in result.routing.items():
            d = per_layer.setdefault(layer, {"top1": [], "segment": [], "domain": []})
            d["top1"].append(rec.experts[:, 0].numpy())
            d["segment"].append(result.rendered.segments[: result.n_replayed])
            d["domain"].append(np.full(result.n_replayed, domain, dtype=object))
    out: dict[str, Any] = {"layers": {}, "max_entropy": math.log(loaded.num_experts)}
    for layer, d in sorted(per_layer.items()):
        top1 = np.concatenate(d["top1"])
        seg = np.concatenate(d["segment"])
        dom = np.concatenate(d["domain"])
        usage = np.bincount(top1.astype(np.int64), minlength=loaded.num_experts)
        out["layers"][layer] = {"usage_entropy": entropy(usage), "mi_segment_top1": mutual_information(seg, top1),
                                "mi_domain_top1": mutual_information(dom, top1), "tokens": int(top1.size)}
    return out


def save_tokenizer(tokenizer: Any, out: Path) -> None:
    """Save the sample tokenizer with the format it was trained on as its chat template (what exports count with)."""
    tokenizer.chat_template = HORIZONLENS_CHAT_TEMPLATE
    tokenizer.save_pretrained(str(out))


def build_checkpoint(store: CorpusStore, out: Path | str, cfg: BuildConfig | None = None,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the tokenizer and the model, save both to `out`, and return the training report."""
    import torch
    from transformers import AutoModelForCausalLM

    from horizonlens.model.tokenizer import train_tokenizer

    cfg = cfg or BuildConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    train_ids, held_ids = split_ids(store, cfg.heldout_every)
    started = time.perf_counter()
    tokenizer_ids = sorted(rng.sample(train_ids, min(cfg.tokenizer_docs, len(train_ids))))
    texts = [trajectory_text(store.steps(t).to_pylist()) for t in tokenizer_ids]
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    log(f"tokenizer: {len(tokenizer)} tokens ({time.perf_counter() - started:.1f}s)")

    def stream(tid: str) -> np.ndarray:
        text = trajectory_text(store.steps(tid).to_pylist())
        return np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"])

    train_streams = [stream(t) for t in train_ids]
    held_sample = sorted(random.Random(cfg.seed + 1).sample(held_ids, min(24, len(held_ids))))
    held_streams = [stream(t)[:4096] for t in held_sample]
    model = AutoModelForCausalLM.from_config(model_config(cfg))
    model.train()
    random_init_loss = heldout_loss(model.eval(), held_streams, cfg.seq_len)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.95))
    curve = []
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        lr = cfg.lr * min(1.0, (step + 1) / 30) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / cfg.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        batch = torch.as_tensor(_windows(train_streams, cfg.seq_len, cfg.batch_size, rng))
        # One loss, computed here: passing `labels` would make transformers compute a second (shifted again,
        # so misaligned) loss on every step and throw it away.
        outputs = model(input_ids=batch[:, :-1], output_router_logits=True)
        logits = outputs.logits.float()
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        bal = balance_loss(outputs.router_logits, cfg.top_k)
        loss = ce + cfg.balance_coef * bal
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 25 == 0 or step == cfg.steps - 1:
            curve.append({"step": step, "ce": round(ce.item(), 4), "balance": round(bal.item(), 4)})
            log(f"step {step:4d}  ce {ce.item():.3f}  balance {bal.item():.3f}  "
                f"{(step + 1) * cfg.batch_size * cfg.seq_len / (time.perf_counter() - t0):.0f} tok/s")
    train_s = time.perf_counter() - t0
    model.eval()
    trained_loss = heldout_loss(model, held_streams, cfg.seq_len)
    model.to(torch.bfloat16).save_pretrained(out)
    save_tokenizer(tokenizer, out)
    report = {"config": asdict(cfg), "train_seconds": round(train_s, 1),
              "train_tokens": cfg.steps * cfg.batch_size * cfg.seq_len,
              "heldout_loss": {"trained": round(trained_loss, 4), "random_init": round(random_init_loss, 4)},
              "curve": curve, "parameters": sum(p.numel() for p in model.parameters()),
              "heldout_trajectories": held_sample}
    (out / "training_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def compare_with_random_init(store: CorpusStore, trained_dir: Path, work: Path, cfg: BuildConfig | None = None,
                             n_trajectories: int = 12) -> dict[str, Any]:
    """Routing structure of the trained checkpoint vs the same architecture at random init."""
    import torch
    from transformers import AutoModelForCausalLM

    from horizonlens.model.loader import load_tokenizer

    cfg = cfg or BuildConfig()
    _, held = split_ids(store, cfg.heldout_every)
    ids = sorted(random.Random(cfg.seed + 2).sample(held, min(n_trajectories, len(held))))
    torch.manual_seed(cfg.seed)
    random_dir = Path(work) / "random-init"
    AutoModelForCausalLM.from_config(model_config(cfg)).save_pretrained(random_dir)
    load_tokenizer(trained_dir).save_pretrained(str(random_dir))
    return {"trajectories": ids, "trained": routing_structure(trained_dir, store, ids),
            "random_init": routing_structure(random_dir, store, ids)}
