"""Checkpoints: loading, rendering trajectories to tokens, router capture, teacher-forced replay, its cache.

torch and transformers are imported inside functions only, so importing this facade stays cheap.
"""

from horizonlens.errors import CheckpointError, NotMoEError, ReplayError
from horizonlens.model.align import Alignment, align_tokens
from horizonlens.model.batch import BatchDone, ReplayPlan, ReplayRun, ensure_replayed, plan_replay, replay_many
from horizonlens.model.capture import LayerRecord, capture_routing, router_margin
from horizonlens.model.loader import (
    LoadedModel,
    check_files,
    checkpoint_id,
    load_checkpoint,
    load_tokenizer,
    usable_checkpoint_id,
)
from horizonlens.model.ray_engine import RayOptions, replay_on_ray
from horizonlens.model.render import SPECIAL_TOKENS, Rendered, render, trajectory_text
from horizonlens.model.replay import (
    ROUTING_MODES,
    Continuation,
    ReplayConfig,
    ReplayResult,
    continue_from,
    replay_trajectory,
)
from horizonlens.model.rollout import RolloutRecord, record_rollout
from horizonlens.model.rollout_files import (
    RolloutRef,
    RolloutRouting,
    RoutingShape,
    iter_rollouts,
    read_rollouts,
    routing_shape,
)
from horizonlens.model.rollout_import import AlignedRollout, Reference, align_rollout, resolve_ids
from horizonlens.model.routers import RouterSite, find_routers
from horizonlens.model.shapes import SHAPES, Shape, build_shape
from horizonlens.model.tokenizer import train_tokenizer
from horizonlens.replays.cache import ReplayCache, list_checkpoints
from horizonlens.replays.compact import CompactReport, compact

__all__ = [
    "ROUTING_MODES",
    "SHAPES",
    "SPECIAL_TOKENS",
    "AlignedRollout",
    "Alignment",
    "BatchDone",
    "CheckpointError",
    "CompactReport",
    "Continuation",
    "LayerRecord",
    "LoadedModel",
    "NotMoEError",
    "Reference",
    "RayOptions",
    "Rendered",
    "ReplayCache",
    "ReplayConfig",
    "ReplayError",
    "ReplayPlan",
    "ReplayResult",
    "RolloutRecord",
    "RolloutRef",
    "RolloutRouting",
    "ReplayRun",
    "RouterSite",
    "RoutingShape",
    "Shape",
    "align_rollout",
    "align_tokens",
    "build_shape",
    "capture_routing",
    "check_files",
    "checkpoint_id",
    "compact",
    "continue_from",
    "ensure_replayed",
    "find_routers",
    "iter_rollouts",
    "list_checkpoints",
    "load_checkpoint",
    "load_tokenizer",
    "read_rollouts",
    "record_rollout",
    "plan_replay",
    "render",
    "replay_many",
    "replay_on_ray",
    "replay_trajectory",
    "resolve_ids",
    "router_margin",
    "routing_shape",
    "train_tokenizer",
    "trajectory_text",
    "usable_checkpoint_id",
]
