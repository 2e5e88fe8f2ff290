"""Rollout routing: the experts an inference engine chose, recorded here the way the engine records it.

Rollout engines (vLLM, SGLang) and trainers route the same tokens to different experts; both engines can
return the experts they used (docs/routing.md). This module records such a rollout from a local checkpoint
and writes it in each engine's own file format, so the import and the comparison with the replay can be
built and tested without an engine.

`record_rollout` runs the checkpoint as a decoder does: bf16, a KV cache, one token per forward call,
teacher-forced on the trajectory's rendered tokens. Real engines prefill the prompt in chunks; decoding
every token is the conservative choice (every token takes the decode path) and keeps one code path. The
file layouts, and which tokens have a row, are in docs/routing.md ("Where the engines expose the routing").
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from horizonlens.errors import RecordError
from horizonlens.model.render import render
from horizonlens.model.replay import ReplayConfig
from horizonlens.storage.atomic import write_atomic

if TYPE_CHECKING:
    from horizonlens.model.loader import LoadedModel


@dataclass
class RolloutRecord:
    """One trajectory's routing as a decoding engine chose it, before it is exported."""

    trajectory_id: str
    checkpoint_id: str
    dtype: str  # the precision the rollout ran in, e.g. "bfloat16"
    token_ids: np.ndarray  # (N,) int32: the rendered trajectory, prompt and output alike
    experts: np.ndarray  # (N, len(moe_layers), top_k) int32: the router's choice when token i was the input
    moe_layers: list[int]  # real layer number of each column of `experts`
    num_hidden_layers: int  # decoder layers, dense ones included: the SGLang array's layer axis
    surprisal: np.ndarray  # (N,) float32 nats of each token given the ones before (NaN for the first)
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def top_k(self) -> int:
        """Experts per token per MoE layer."""
        return int(self.experts.shape[2])

    def engine_rows(self, start_len: int = 0) -> np.ndarray:
        """The rows an engine returns: positions [start_len, N - 1), MoE layers only."""
        n = len(self.token_ids)
        if not 0 <= start_len <= max(0, n - 1):
            raise ValueError(f"start_len {start_len} is outside [0, {max(0, n - 1)}]")
        return self.experts[start_len:max(start_len, n - 1)]

    def sglang_array(self, start_len: int = 0) -> np.ndarray:
        """(N - 1 - start_len, num_hidden_layers, top_k) int32, -1 in the slots of dense layers."""
        rows = self.engine_rows(start_len)
        out = np.full((rows.shape[0], self.num_hidden_layers, self.top_k), -1, dtype=np.int32)
        out[:, self.moe_layers, :] = rows
        return out


def encode_sglang(array: np.ndarray) -> str:
    """SGLang's wire form: base64 of the int32 array's bytes, little-endian, (token, layer, slot) order."""
    return base64.b64encode(np.ascontiguousarray(array, dtype="<i4").tobytes()).decode("ascii")


def decode_sglang(text: str, num_hidden_layers: int, top_k: int) -> np.ndarray:
    """SGLang's `routed_experts` string back to a (tokens, num_hidden_layers, top_k) int32 array."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        raise RecordError(f"routed_experts is not valid base64 ({exc})") from exc
    per_token = num_hidden_layers * top_k * 4
    if len(raw) % per_token:
        raise RecordError(f"routed_experts holds {len(raw)} bytes, not a whole number of tokens of "
                          f"{num_hidden_layers} layers x top-{top_k} int32 ({per_token} bytes each)")
    return np.frombuffer(raw, dtype="<i4").reshape(-1, num_hidden_layers, top_k).astype(np.int32)


def _at_dtype(loaded: "LoadedModel", dtype: str) -> "LoadedModel":
    """The same checkpoint in `dtype`: `loaded` itself when it already is, else loaded again."""
    from horizonlens.model.files import read_config
    from horizonlens.model.loader import load_checkpoint, resolve_device

    _, wanted = resolve_device(str(loaded.device), dtype)
    if wanted == loaded.dtype:
        return loaded
    raw = read_config(loaded.path)
    # `loaded` exists, so whoever loaded it allowed what its files need: custom code, pickle weights
    return load_checkpoint(loaded.path, device=str(loaded.device), dtype=dtype, allow_dense=True,
                           trust_remote_code=bool(raw.get("auto_map")),
                           allow_pickle=not any(loaded.path.glob("*.safetensors")))


def record_rollout(loaded: "LoadedModel", trajectory_id: str, steps: list[dict[str, Any]], dtype: str = "bfloat16",
                   config: ReplayConfig | None = None,
                   progress: Callable[[int, int], None] | None = None) -> RolloutRecord:
    """Decode a trajectory token by token with a KV cache in `dtype`, recording each router's choice.

    Rendering and length limits come from `config`, as for the replay, so both see the same tokens
    (its chunk_size is not used: a decoder feeds one token per forward call). A model not already in
    `dtype` is loaded again in it; pass one loaded in `dtype` to record many trajectories.
    """
    import torch

    from horizonlens.model.capture import capture_routing
    from horizonlens.model.replay import forward_chunks

    config = config or ReplayConfig()
    started = time.perf_counter()
    engine = _at_dtype(loaded, dtype)
    if not engine.routers:
        raise RecordError(f"{loaded.path}: no router modules, so there is no routing to record")
    rendered = render(engine.tokenizer, steps, config.use_chat_template, config.max_field_tokens)
    limit = min(engine.max_context, config.max_tokens or engine.max_context)
    n = min(len(rendered), limit)
    notes = list(rendered.notes)
    if n < len(rendered):
        notes.append(f"recorded the first {n:,} of {len(rendered):,} tokens (limit {limit:,})")
    ids = torch.as_tensor(rendered.token_ids[:n], dtype=torch.long)[None, :]  # (1, N)
    with capture_routing(engine) as recorder:
        surprisal, _ = forward_chunks(engine, ids, 1, progress)
        routing = recorder.take()
    layers = sorted(routing)
    experts = np.stack([routing[layer].experts.numpy() for layer in layers], axis=1).astype(np.int32)  # (N, L, k)
    config_obj = getattr(engine.model, "config", None)
    num_hidden_layers = int(getattr(config_obj, "num_hidden_layers", 0) or (max(layers) + 1))
    return RolloutRecord(trajectory_id, loaded.checkpoint_id, str(engine.dtype).replace("torch.", ""),
                         rendered.token_ids[:n].astype(np.int32), experts, layers, num_hidden_layers, surprisal,
                         notes, time.perf_counter() - started)


def sglang_record(record: RolloutRecord, start_len: int = 0, flat: bool = False) -> dict[str, Any]:
    """One JSONL line as SGLang returns it (`meta_info`), or the flat form with `start_len`."""
    routed = encode_sglang(record.sglang_array(start_len))
    base = {"trajectory_id": record.trajectory_id, "token_ids": record.token_ids.tolist()}
    if flat:
        return {**base, "routed_experts": routed, "start_len": start_len}
    return {**base, "meta_info": {"routed_experts": routed, "routed_experts_start_len": start_len}}


def vllm_record(record: RolloutRecord) -> dict[str, Any]:
    """One JSONL line with vLLM's `routed_experts` as nested lists (tokens, MoE layers, top-k)."""
    return {"trajectory_id": record.trajectory_id, "token_ids": record.token_ids.tolist(),
            "routed_experts": record.engine_rows().tolist()}


def _write_jsonl(lines: Iterable[dict[str, Any]], path: Path | str) -> Path:
    def write(fh: Any) -> None:
        for line in lines:
            fh.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")

    write_atomic(Path(path), write)
    return Path(path)


def write_sglang_jsonl(records: Iterable[RolloutRecord], path: Path | str, start_len: int = 0,
                       flat: bool = False) -> Path:
    """SGLang-shaped JSONL, one trajectory per line (see the module docstring)."""
    return _write_jsonl((sglang_record(r, start_len, flat) for r in records), path)


def write_vllm_jsonl(records: Iterable[RolloutRecord], path: Path | str) -> Path:
    """vLLM-shaped JSONL, one trajectory per line (see the module docstring)."""
    return _write_jsonl((vllm_record(r) for r in records), path)


def write_npz(record: RolloutRecord, path: Path | str, start_len: int = 0) -> Path:
    """One trajectory's rollout as an .npz: token_ids, routed_experts, moe_layers, start_len, trajectory_id."""
    def write(fh: Any) -> None:
        np.savez(fh, trajectory_id=np.array(record.trajectory_id), token_ids=record.token_ids.astype(np.int32),
                 routed_experts=record.engine_rows(start_len).astype(np.int32),
                 moe_layers=np.asarray(record.moe_layers, dtype=np.int32), start_len=np.array(start_len))

    write_atomic(Path(path), write)
    return Path(path)
