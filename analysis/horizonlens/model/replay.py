"""Teacher-forced replay of a recorded trajectory through a loaded checkpoint.

One pass over the rendered trajectory in chunks, carrying the model's cache between chunks, so
memory stays bounded by the chunk size (plus the cache) however long the trajectory is. Per
token: surprisal of the recorded token, whether it was the model's top-1 choice, and the router's
decisions per layer. Per step: aggregates over the agent-written tokens (docs/replay.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pyarrow as pa

from horizonlens.corpus.schema import REPLAY_STEPS, ROUTING_TOKENS, TOKEN_SURPRISAL
from horizonlens.errors import ReplayError
from horizonlens.model.render import (
    DEFAULT_FIELD_TOKENS,
    ActionParts,
    Rendered,
    recorded_action,
    render,
    split_action,
)
from horizonlens.replays.codec import aggregate_tables, token_table, weight_scale
from horizonlens.replays.layout import TOKEN_SURPRISAL_TABLE

if TYPE_CHECKING:
    from horizonlens.model.capture import LayerRecord
    from horizonlens.model.loader import LoadedModel


# What a replay stores of its routing: both tiers, or the step tier only (docs/corpus-format.md).
ROUTING_MODES = ("tokens", "steps")


@dataclass
class ReplayConfig:
    """How to replay; every field has a default that works on CPU."""

    chunk_size: int = 512  # tokens per forward call; memory grows with it, speed too (up to a point)
    max_tokens: int | None = None  # replay at most this many tokens (default: the model's context length)
    max_field_tokens: int = DEFAULT_FIELD_TOKENS  # cut any single field longer than this
    use_chat_template: bool | None = None  # None: use the checkpoint's chat template if it has one
    routing: str = "tokens"  # tokens: store both routing tiers; steps: only the step tier (no per-token rows)

    def __post_init__(self) -> None:
        if self.routing not in ROUTING_MODES:
            raise ReplayError(f"routing must be one of {', '.join(ROUTING_MODES)}, not {self.routing!r}")


@dataclass
class ReplayResult:
    """Everything one replay produced, before it is written to the cache."""

    trajectory_id: str
    checkpoint_id: str
    rendered: Rendered
    n_replayed: int  # tokens actually run through the model (< len(rendered) when truncated)
    surprisal: np.ndarray  # (n_replayed,) float32 nats; NaN for the first token
    top1: np.ndarray  # (n_replayed,) bool: the recorded token was the model's argmax
    routing: dict[int, "LayerRecord"]  # per real layer number
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    routing_mode: str = "tokens"  # ReplayConfig.routing: whether the token tier is stored
    num_experts: int = 0  # routed experts per MoE layer (the largest, if layers differ)

    @property
    def truncated(self) -> bool:
        """Was the trajectory longer than the replay limit (its tail not replayed)?"""
        return self.n_replayed < len(self.rendered)

    def step_table(self) -> pa.Table:
        """One row per step of the trajectory (REPLAY_STEPS schema)."""
        r, n = self.rendered, self.n_replayed
        steps = r.steps[:n]
        scored = r.scored[:n] & ~np.isnan(self.surprisal)
        ent = np.mean(np.stack([rec.entropy.numpy() for rec in self.routing.values()]), axis=0) if self.routing \
            else np.full(n, np.nan, dtype=np.float32)
        rows = []
        for step in np.unique(r.steps):
            in_step = steps == step
            total = int((r.steps == step).sum())
            mask = in_step & scored
            rows.append({
                "trajectory_id": self.trajectory_id, "step": int(step), "n_tokens": total, "n_scored": int(mask.sum()),
                "surprisal": float(self.surprisal[mask].mean()) if mask.any() else None,
                "max_surprisal": float(self.surprisal[mask].max()) if mask.any() else None,
                "top1_agreement": float(self.top1[mask].mean()) if mask.any() else None,
                "entropy": float(np.nanmean(ent[in_step])) if in_step.any() and self.routing else None,
                "truncated": int(in_step.sum()) < total,
            })
        return pa.Table.from_pylist(rows, schema=REPLAY_STEPS)

    def surprisal_table(self) -> pa.Table:
        """One row per replayed token: its surprisal, whether it was the model's top-1, whether it is scored."""
        n = self.n_replayed
        surprisal = self.surprisal[:n].astype(np.float16)
        return pa.table({"trajectory_id": pa.array([self.trajectory_id] * n, pa.string()),
                         "step": pa.array(self.rendered.steps[:n], pa.int32()),
                         "token_index": pa.array(np.arange(n), pa.int32()),
                         "surprisal": pa.array(surprisal, pa.float16(), mask=np.isnan(surprisal)),
                         "top1": pa.array(self.top1[:n], pa.bool_()),
                         "scored": pa.array(self.rendered.scored[:n], pa.bool_())}, schema=TOKEN_SURPRISAL)

    def _stacked(self) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Layers, experts (N, L, k) and weights (N, L, k) of the replayed tokens."""
        layers = sorted(self.routing)
        recs = [self.routing[layer] for layer in layers]
        experts = np.stack([r.experts.numpy() for r in recs], axis=1)  # (N, L, k)
        weights = np.stack([r.weights.numpy() for r in recs], axis=1)  # (N, L, k)
        return layers, experts, weights

    def _experts(self, experts: np.ndarray) -> int:
        return self.num_experts or int(experts.max(initial=-1)) + 1

    def routing_table(self) -> pa.Table:
        """The token tier: one row per (token, MoE layer) (ROUTING_TOKENS schema), token-major.

        Empty (no rows) for a model without routers.
        """
        if not self.routing:
            return ROUTING_TOKENS.empty_table()
        layers, experts, weights = self._stacked()
        recs = [self.routing[layer] for layer in layers]
        entropy = np.stack([r.entropy.numpy() for r in recs], axis=1)  # (N, L)
        margins = [r.margin for r in recs]
        margin = None if any(m is None for m in margins) else \
            np.stack([m.numpy() for m in margins if m is not None], axis=1)  # (N, L)
        r, n = self.rendered, self.n_replayed
        return token_table(self.trajectory_id, layers, experts, weights, entropy, margin, self._experts(experts),
                           steps=r.steps[:n], segments=r.segments[:n], token_ids=r.token_ids[:n],
                           scale=weight_scale(weights))

    def aggregate_tables(self) -> dict[str, pa.Table]:
        """The step tier: `routing_steps` and `routing_segments` (empty dict for a model without routers)."""
        if not self.routing:
            return {}
        layers, experts, weights = self._stacked()
        r, n = self.rendered, self.n_replayed
        return aggregate_tables(self.trajectory_id, layers, experts, weights, self._experts(experts),
                                steps=r.steps[:n], segments=r.segments[:n], scale=weight_scale(weights))

    def tables(self) -> dict[str, pa.Table]:
        """Every table this replay stores, by replay-cache table name (what `ReplayCache.write` writes)."""
        out = {"steps": self.step_table(), TOKEN_SURPRISAL_TABLE: self.surprisal_table(), **self.aggregate_tables()}
        if self.routing and self.routing_mode == "tokens":
            out["routing_tokens"] = self.routing_table()
        return out

    def cache_notes(self) -> dict[str, str]:
        """What the manifest records about this replay: its notes, lengths, template and routing tiers."""
        stored = "none" if not self.routing else self.routing_mode
        return {"notes": "\n".join(self.notes), "n_replayed": str(self.n_replayed),
                "n_rendered": str(len(self.rendered)), "template": self.rendered.template, "routing": stored}


def forward_chunks(loaded: "LoadedModel", ids: "Any", chunk_size: int,
                   progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Run token ids (1, N) through the model chunk by chunk with its cache.

    Returns per-token surprisal (nats) of each token given everything before it, and top-1 agreement.
    Callers hold the model lock (capture_routing does).
    """
    import torch

    n = int(ids.shape[1])
    surprisal = np.full(n, np.nan, dtype=np.float32)
    top1 = np.zeros(n, dtype=bool)
    cache = None
    prev_last: torch.Tensor | None = None
    model = loaded.model
    with torch.inference_mode():
        for start in range(0, n, chunk_size):
            end = min(n, start + chunk_size)
            chunk = ids[:, start:end].to(loaded.device)
            out = model(input_ids=chunk, cache=cache, use_cache=True)
            cache = out.cache
            logp = torch.log_softmax(out.logits[0].float(), dim=-1)  # (L, V)
            targets = chunk[0]
            if prev_last is not None:
                surprisal[start] = float(-prev_last[targets[0]])
                top1[start] = bool(prev_last.argmax() == targets[0])
            if end - start > 1:
                pred = logp[:-1]
                surprisal[start + 1:end] = (-pred.gather(1, targets[1:, None])[:, 0]).cpu().numpy()
                top1[start + 1:end] = (pred.argmax(-1) == targets[1:]).cpu().numpy()
            prev_last = logp[-1]
            if progress:
                progress(end, n)
    return surprisal, top1


def _limit(max_context: int, config: ReplayConfig) -> int:
    """The most tokens a replay runs: the model's context, or less if the config says so."""
    return min(max_context, config.max_tokens or max_context)


def replay_length(tokenizer: Any, steps: list[dict[str, Any]], max_context: int,
                  config: ReplayConfig | None = None) -> int:
    """How many tokens a replay of these steps will run, known before replaying (no model is loaded).

    Rendered as the replay renders them, with the checkpoint's tokenizer, and cut at the same limit.
    """
    config = config or ReplayConfig()
    rendered = render(tokenizer, steps, config.use_chat_template, config.max_field_tokens)
    return min(len(rendered), _limit(max_context, config))


def replay_trajectory(loaded: "LoadedModel", trajectory_id: str, steps: list[dict[str, Any]],
                      config: ReplayConfig | None = None,
                      progress: Callable[[int, int], None] | None = None) -> ReplayResult:
    """Render, then replay a trajectory (its steps as dicts of the corpus `steps` columns)."""
    import torch

    from horizonlens.model.capture import capture_routing

    config = config or ReplayConfig()
    started = time.perf_counter()
    rendered = render(loaded.tokenizer, steps, config.use_chat_template, config.max_field_tokens)
    limit = _limit(loaded.max_context, config)
    notes = list(rendered.notes)
    n = min(len(rendered), limit)
    if n < len(rendered):
        first_cut = int(rendered.steps[n])
        notes.append(f"the trajectory renders to {len(rendered):,} tokens but the limit is {limit:,}: replayed the "
                     f"first {n:,}; step {first_cut} onward is not replayed (truncated)")
    ids = torch.as_tensor(rendered.token_ids[:n], dtype=torch.long)[None, :]
    with capture_routing(loaded) as recorder:
        surprisal, top1 = forward_chunks(loaded, ids, max(1, config.chunk_size), progress) if n else \
            (np.zeros(0, np.float32), np.zeros(0, bool))
        routing = recorder.take()
    return ReplayResult(trajectory_id, loaded.checkpoint_id, rendered, n, surprisal, top1, routing, notes,
                        time.perf_counter() - started, routing_mode=config.routing, num_experts=loaded.num_experts)


@dataclass
class Continuation:
    """What the model would have written at a step, beside what the agent recorded."""

    step: int
    generated: str
    recorded: str
    prompt_tokens: int
    prefix_truncated: bool
    settings: dict[str, Any]
    generated_parts: ActionParts = field(default_factory=ActionParts)  # the model's text, split by the template
    recorded_parts: ActionParts = field(default_factory=ActionParts)  # the step as recorded, in the same parts


def continue_from(loaded: "LoadedModel", steps: list[dict[str, Any]], step: int, max_new_tokens: int = 96,
                  do_sample: bool = False, temperature: float = 0.7, top_p: float = 0.95, seed: int = 0,
                  config: ReplayConfig | None = None) -> Continuation:
    """Continue from the prefix just before the agent's recorded action at `step`."""
    import torch
    from transformers import GenerationMixin

    config = config or ReplayConfig()
    rendered = render(loaded.tokenizer, steps, config.use_chat_template, config.max_field_tokens)
    start = rendered.action_start(step)
    if start is None:
        raise ValueError(f"step {step} has no agent-written content to compare with")
    span = rendered.step_range(step)
    assert span is not None
    recorded_ids = [int(t) for t, s in zip(rendered.token_ids[start:span[1]], rendered.scored[start:span[1]],
                                           strict=True) if s]
    max_new_tokens = max(1, min(int(max_new_tokens), 1024))
    budget = max(1, loaded.max_context - max_new_tokens)
    prefix = rendered.token_ids[max(0, start - budget):start]
    ids = torch.as_tensor(prefix, dtype=torch.long, device=loaded.device)[None, :]
    eos = [loaded.tokenizer.convert_tokens_to_ids(t) for t in ("<|end|>", "</tool_call>")
           if t in loaded.tokenizer.get_vocab()] or None
    settings: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample}
    gen_kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample,
                                  "pad_token_id": loaded.tokenizer.pad_token_id or 0}
    if eos:
        gen_kwargs["eos_token_id"] = eos
    if do_sample:
        gen_kwargs.update(temperature=max(1e-3, float(temperature)), top_p=float(top_p))
        settings.update(temperature=temperature, top_p=top_p, seed=seed)
    model = loaded.model
    if not isinstance(model, GenerationMixin):
        raise ReplayError(f"{loaded.architecture} cannot generate text, so there is no continuation to show")
    with loaded.lock, torch.inference_mode():
        if do_sample:
            torch.manual_seed(seed)
        out = model.generate(ids, attention_mask=torch.ones_like(ids), **gen_kwargs)
    new = out[0, ids.shape[1]:].tolist()
    generated = _one_text(loaded.tokenizer.decode(new, skip_special_tokens=False))
    recorded = _one_text(loaded.tokenizer.decode(recorded_ids, skip_special_tokens=False))
    # generation starts inside the reasoning when the prompt's last template piece opened it
    opened = _one_text(loaded.tokenizer.decode(rendered.token_ids[max(0, start - 4):start].tolist(),
                                               skip_special_tokens=False))
    in_think = opened.rstrip().endswith("<think>")
    row = next((s for s in steps if int(s["step"]) == step), {})
    return Continuation(step, generated, recorded, int(ids.shape[1]), start > budget, settings,
                        split_action(generated, in_think), recorded_action(row))


def _one_text(decoded: str | list[str]) -> str:
    """The text of one decoded sequence (`decode` is typed for batches too, which give lists)."""
    if not isinstance(decoded, str):
        raise TypeError(f"expected one decoded text, got {type(decoded).__name__}")
    return decoded
