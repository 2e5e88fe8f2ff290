"""Metrics over the corpus and its replays; each module returns tidy tables.

Error compounding along the horizon, decisive-step attribution, model-side signals, early warning of
failed checks from those signals, expert-routing statistics, and rollout vs replay routing.
"""

from horizonlens.metrics import (
    attribution,
    compare,
    compounding,
    early_warning,
    expert_rank,
    info,
    model_side,
    replays,
    rollout,
    routing,
    stats,
    timeline,
)

__all__ = ["attribution", "compare", "compounding", "early_warning", "expert_rank", "info", "model_side", "replays",
           "rollout", "routing", "stats", "timeline"]
