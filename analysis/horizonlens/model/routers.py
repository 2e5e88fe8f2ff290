"""Which modules of a model are its MoE routers, at which real layer, and how each scores its experts.

Matched on the module, not the state-dict key: in-memory names differ between architectures (`mlp.gate`,
`mlp.router`, `block_sparse_moe.router`), and dense layers have no router at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

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
