"""Router capture: forward hooks on the model's own router modules.

In transformers 5.x every MoE router is a module whose forward returns
`(router_logits [T, E], top_k_weights [T, k], top_k_index [T, k])`, so one hook serves every
architecture. We record exactly what the router returned (never re-deriving top-k from logits,
which is wrong for biased, group-limited routing such as DeepSeek-V3), plus the entropy of the
full router distribution, keyed by the model's real layer number.
"""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    import torch
    from torch import nn

    from horizonlens.model.loader import LoadedModel

_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|block)\.(\d+)\.")


@dataclass
class RouterSite:
    """One router module: where it sits and how it scores experts."""

    name: str  # in-memory module path, e.g. model.layers.3.mlp.gate
    layer: int  # the decoder layer it belongs to (dense layers have no router)
    module: "nn.Module"
    num_experts: int
    top_k: int
    scoring: str  # "softmax" or "sigmoid": how to turn logits into the full distribution


def is_router(name: str, module: "nn.Module", parent: "nn.Module | None") -> bool:
    """The one predicate for 'this module is an MoE router'."""
    cls = type(module).__name__
    if re.search(r"Top[kK]Router$|Router$", cls):
        return True
    # a gate/router child beside an `experts` module (covers routers without 'Router' in the name)
    return parent is not None and hasattr(parent, "experts") and name.rsplit(".", 1)[-1] in ("gate", "router") \
        and hasattr(module, "weight")


def find_routers(model: "nn.Module") -> list[RouterSite]:
    """Every MoE router of a model with its real layer number, experts, top-k and scoring, by layer."""
    modules = dict(model.named_modules())
    sites = []
    for name, module in modules.items():
        parent = modules.get(name.rsplit(".", 1)[0]) if "." in name else None
        if not is_router(name, module, parent):
            continue
        match = _LAYER.search(name)
        if match is None:
            continue
        weight = getattr(module, "weight", None)
        num_experts = int(getattr(module, "num_experts", 0) or (weight.shape[0] if weight is not None else 0))
        top_k = int(getattr(module, "top_k", 0) or getattr(getattr(model, "config", None), "num_experts_per_tok", 0))
        scoring = "sigmoid" if hasattr(module, "e_score_correction_bias") else "softmax"
        sites.append(RouterSite(name, int(match.group(1)), module, num_experts, top_k, scoring))
    return sorted(sites, key=lambda s: s.layer)


@dataclass
class LayerRecord:
    """What one router returned for one forward call (tensors on the CPU, detached)."""

    experts: "torch.Tensor"  # (T, k) int16: the router's own top-k expert ids
    weights: "torch.Tensor"  # (T, k) float32: the weights the experts received
    entropy: "torch.Tensor"  # (T,) float32: entropy (nats) of the full router distribution


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
                                  torch.cat([r.entropy for r in recs]))
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


def _make_hook(site: RouterSite, recorder: RoutingRecorder, owner: int) -> Callable[[Any, Any, Any], None]:
    import torch

    def hook(module: Any, args: Any, output: Any) -> None:
        if threading.get_ident() != owner:  # another thread's forward: not ours to record
            return
        logits, weights, index = output[0], output[1], output[2]
        recorder.layers.setdefault(site.layer, []).append(LayerRecord(
            experts=index.detach().to("cpu", dtype=torch.int16),
            weights=weights.detach().float().cpu(),
            entropy=router_entropy(logits.detach(), site.scoring).cpu()))
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
