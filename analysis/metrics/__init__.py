"""Metrics over the corpus and its replays; each module returns tidy tables.

Error compounding along the horizon, decisive-step attribution, model-side signals, expert-routing
statistics, and rollout vs replay routing.
"""

from horizonlens.metrics import (
    attribution,
    compare,
    compounding,
    info,
    model_side,
    replays,
    rollout,
    routing,
    stats,
    timeline,
)

__all__ = ["attribution", "compare", "compounding", "info", "model_side", "replays", "rollout", "routing", "stats",
           "timeline"]
