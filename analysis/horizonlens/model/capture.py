"""Router capture: forward hooks on the model's own router modules.

In transformers 5.x every MoE router is a module whose forward returns
`(router_logits [T, E], top_k_weights [T, k], top_k_index [T, k])`, so one hook serves every
architecture. We record exactly what the router returned (never re-deriving top-k from logits,
which is wrong for biased, group-limited routing such as DeepSeek-V3), plus the entropy of the
full router distribution, keyed by the model's real layer number.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from horizonlens.model.routers import RouterSite

if TYPE_CHECKING:
    import torch
    from torch import nn

    from horizonlens.model.loader import LoadedModel


@dataclass
class LayerRecord:
    """What one router returned for one forward call (tensors on the CPU, detached)."""

    experts: "torch.Tensor"  # (T, k) int16: the router's own top-k expert ids
    weights: "torch.Tensor"  # (T, k) float32: the weights the experts received
    entropy: "torch.Tensor"  # (T,) float32: entropy (nats) of the full router distribution
    margin: "torch.Tensor | None" = None  # (T,) float32: the router's k-th minus (k+1)-th score (router_margin)


@dataclass
class RoutingRecorder:
    """Per layer, the list of records of successive forward calls (one per replay chunk)."""

    layers: dict[int, list[LayerRecord]] = field(default_factory=dict)
    keep_logits: bool = False
    logits: dict[int, list["torch.Tensor"]] = field(default_factory=dict)

    def clear(self) -> None:
        """Drop everything recorded so far."""
        self.layers.clear()
        self.logits.clear()

    def take(self) -> dict[int, LayerRecord]:
        """Concatenate the records per layer along tokens and reset."""
        import torch

        out = {layer: LayerRecord(torch.cat([r.experts for r in recs]), torch.cat([r.weights for r in recs]),
                                  torch.cat([r.entropy for r in recs]),
                                  torch.cat([r.margin for r in recs if r.margin is not None])
                                  if all(r.margin is not None for r in recs) else None)
               for layer, recs in self.layers.items()}
        self.layers.clear()
        return out


def router_entropy(logits: "torch.Tensor", scoring: str) -> "torch.Tensor":
    """Entropy (nats) of each token's full router distribution, softmax or normalised sigmoid scores."""
    import torch

    logits = logits.float()
    if scoring == "sigmoid":  # DeepSeek-V3-style: independent sigmoid scores, normalised to a distribution
        probs = torch.sigmoid(logits)
        probs = probs / probs.sum(-1, keepdim=True).clamp_min(1e-20)
        return -(probs * probs.clamp_min(1e-20).log()).sum(-1)
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def router_margin(logits: "torch.Tensor", index: "torch.Tensor", module: "nn.Module", scoring: str) -> "torch.Tensor":
    """Per token, how far the router's choice was from a tie: its k-th score minus the best score it passed over.

    Scores are those the router ranks by: the logits for softmax routers (top-k of the softmax is top-k of
    the logits, so the margin is a log-ratio of router probabilities); for biased sigmoid routers
    (DeepSeek-V3) the sigmoid score plus the correction bias. With group-limited routing the passed-over
    experts are those of the groups the token routed into, and the margin is the smaller of that and the
    margin of the group choice (the topk_group-th group score minus the next; a group scores the sum of its
    two best experts, as DeepSeek-V3 ranks them). The selected experts are the router's own; nothing here
    changes what is recorded as chosen. A value near 0 is a near-tie: a tiny numeric difference (bf16 vs
    fp32, another kernel) can flip that choice. Negative values (a router that did not pick its k best
    scores) are clamped to 0.
    """
    import torch

    scores = logits.float()
    bias = getattr(module, "e_score_correction_bias", None)
    if scoring == "sigmoid":
        scores = scores.sigmoid()
    if isinstance(bias, torch.Tensor):
        scores = scores + bias.float().to(scores.device)
    index = index.long()
    chosen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, index, True)  # (T, E)
    eligible = torch.ones_like(chosen)
    groups, topk_group = int(getattr(module, "num_group", 1) or 1), int(getattr(module, "topk_group", 0) or 0)
    group_margin = None
    if 1 < groups and 0 < topk_group < groups and scores.shape[1] % groups == 0:
        grouped = scores.view(scores.shape[0], groups, -1)  # (T, G, E/G)
        group_scores = grouped.topk(min(2, grouped.shape[-1]), dim=-1).values.sum(-1)  # (T, G)
        ranked = group_scores.topk(topk_group + 1, dim=-1).values  # (T, topk_group + 1), descending
        group_margin = ranked[:, -2] - ranked[:, -1]
        picked = torch.zeros_like(group_scores, dtype=torch.bool)
        picked.scatter_(1, group_scores.topk(topk_group, dim=-1).indices, True)
        picked |= chosen.view_as(grouped).any(-1)  # the groups the chosen experts are in, whatever a tie did
        eligible = picked[:, :, None].expand_as(grouped).reshape_as(chosen)
    worst_chosen = scores.masked_fill(~chosen, float("inf")).min(-1).values
    best_other = scores.masked_fill(chosen | ~eligible, float("-inf")).max(-1).values
    margin = worst_chosen - best_other  # +inf when every eligible expert was chosen
    if group_margin is not None:
        margin = torch.minimum(margin, group_margin)
    return margin.clamp_min(0.0)


def _make_hook(site: RouterSite, recorder: RoutingRecorder, owner: int) -> Callable[[Any, Any, Any], None]:
    import torch

    def hook(module: Any, args: Any, output: Any) -> None:
        if threading.get_ident() != owner:  # another thread's forward: not ours to record
            return
        logits, weights, index = output[0], output[1], output[2]
        recorder.layers.setdefault(site.layer, []).append(LayerRecord(
            experts=index.detach().to("cpu", dtype=torch.int16),
            weights=weights.detach().float().cpu(),
            entropy=router_entropy(logits.detach(), site.scoring).cpu(),
            margin=router_margin(logits.detach(), index.detach(), module, site.scoring).cpu()))
        if recorder.keep_logits:
            recorder.logits.setdefault(site.layer, []).append(logits.detach().float().cpu())
    return hook


@contextmanager
def capture_routing(loaded: "LoadedModel", keep_logits: bool = False) -> Iterator[RoutingRecorder]:
    """Record router decisions of every forward run inside the block.

    Holds the model's lock for the whole block, so concurrent app sessions sharing one cached
    model take turns, and always removes its hooks, even when the forward raises.
    """
    recorder = RoutingRecorder(keep_logits=keep_logits)
    with loaded.lock:
        handles = []
        try:
            owner = threading.get_ident()
            for site in loaded.routers:
                handles.append(site.module.register_forward_hook(_make_hook(site, recorder, owner)))
            yield recorder
        finally:
            for handle in handles:
                handle.remove()
