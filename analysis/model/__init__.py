"""Checkpoints: loading, rendering trajectories to tokens, router capture, teacher-forced replay, its cache.

torch and transformers are imported inside functions only, so importing this facade stays cheap.
"""

from horizonlens.errors import CheckpointError, NotMoEError, ReplayError
from horizonlens.model.batch import BatchDone, ReplayPlan, ReplayRun, ensure_replayed, plan_replay, replay_many
from horizonlens.model.cache import ReplayCache, list_checkpoints
from horizonlens.model.capture import LayerRecord, RouterSite, capture_routing, find_routers
from horizonlens.model.loader import LoadedModel, check_files, checkpoint_id, load_checkpoint
from horizonlens.model.ray_engine import RayOptions, replay_on_ray
from horizonlens.model.render import SPECIAL_TOKENS, Rendered, render, trajectory_text
from horizonlens.model.replay import Continuation, ReplayConfig, ReplayResult, continue_from, replay_trajectory
from horizonlens.model.tokenizer import train_tokenizer

__all__ = [
    "SPECIAL_TOKENS",
    "BatchDone",
    "CheckpointError",
    "Continuation",
    "LayerRecord",
    "LoadedModel",
    "NotMoEError",
    "RayOptions",
    "Rendered",
    "ReplayCache",
    "ReplayConfig",
    "ReplayError",
    "ReplayPlan",
    "ReplayResult",
    "ReplayRun",
    "RouterSite",
    "capture_routing",
    "check_files",
    "checkpoint_id",
    "continue_from",
    "ensure_replayed",
    "find_routers",
    "list_checkpoints",
    "load_checkpoint",
    "plan_replay",
    "render",
    "replay_many",
    "replay_on_ray",
    "replay_trajectory",
    "trajectory_text",
    "train_tokenizer",
]
