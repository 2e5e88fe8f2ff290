"""Metrics over the corpus and its replays: error compounding along the horizon, decisive-step
attribution, model-side signals and expert-routing statistics. Each module returns tidy tables.
"""

from horizonlens.metrics import (
    attribution,
    compare,
    compounding,
    info,
    model_side,
    replays,
    routing,
    stats,
    timeline,
)

__all__ = ["attribution", "compare", "compounding", "info", "model_side", "replays", "routing", "stats", "timeline"]
