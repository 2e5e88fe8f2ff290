"""Reading the routing a rollout engine returned (vLLM, SGLang, or an .npz an RL framework saved).

`horizonlens routing import` reads these files (the formats are described in
`horizonlens.model.rollout` and docs/routing.md). Every record is checked against the checkpoint's
routing shape before anything is stored: the layer axis must be either all decoder layers (SGLang,
and vLLM's own buffer) or the MoE layers only (the issue's vLLM form), the top-k axis must be the
router's top-k, expert ids must lie in [0, E), and the rows must fit the token ids. A record that fails
is reported with its file, record and reason (`RecordError`) and the others still import.

After reading, a record's routing is one row per token id, `-1` where the engine returned no routing:
before `start_len`, the last token (sampled, never fed through the model), positions an engine
marked with -1 (vLLM's prefix-cache sentinel). Columns are the checkpoint's MoE layers; the slots of
dense layers (-1 from SGLang, 0 from vLLM's full-width buffer) are dropped.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from horizonlens.errors import CheckpointError, RecordError
from horizonlens.ingest.readers import Problem, Raw, iter_records
from horizonlens.model.rollout import decode_sglang

FORMATS = ("sglang", "vllm", "npz")
# Keys a record may carry its trajectory's id under, most specific first (see resolve_ids).
ID_KEYS = ("trajectory_id", "id", "instance_id", "session_id")
MAX_TOKENS = 4_000_000  # token ids per record: far beyond any context, small enough to refuse garbage early


@dataclass(frozen=True)
class RoutingShape:
    """What a checkpoint's routers look like: the axes a rollout's routing must have."""

    num_hidden_layers: int  # decoder layers, dense ones included (SGLang's layer axis)
    moe_layers: tuple[int, ...]  # real layer numbers of the layers with a router, in order
    num_experts: int
    top_k: int

    def describe(self) -> str:
        """One line for messages."""
        dense = self.num_hidden_layers - len(self.moe_layers)
        return (f"{self.num_hidden_layers} layers ({len(self.moe_layers)} MoE{f', {dense} dense' if dense else ''}), "
                f"{self.num_experts} experts, top-{self.top_k}")


def routing_shape(checkpoint: Path | str) -> RoutingShape:
    """The routing shape of a checkpoint, from its config alone (no weights are read).

    The model is built on PyTorch's meta device and its routers found with the same predicate the
    replay uses, so which layers are dense (DeepSeek's first_k_dense_replace, Qwen's mlp_only_layers,
    ...) comes from transformers itself rather than from per-architecture rules here.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from horizonlens.model.loader import text_config
    from horizonlens.model.routers import find_routers

    path = Path(checkpoint)
    raw = _read_config(path)
    if raw.get("auto_map"):
        raise CheckpointError(f"{path}: the config asks for custom code (auto_map); Horizon Lens does not run it to "
                              "find the routing shape")
    try:
        config, _ = text_config(AutoConfig.from_pretrained(path, local_files_only=True))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError, OSError) as exc:
        raise CheckpointError(f"{path}: transformers cannot build the model from config.json ({exc})") from exc
    sites = find_routers(model)
    if not sites:
        raise CheckpointError(f"{path}: the model has no router modules; there is no routing to compare")
    layers = int(getattr(config, "num_hidden_layers", 0) or max(s.layer for s in sites) + 1)
    return RoutingShape(layers, tuple(s.layer for s in sites), max(s.num_experts for s in sites),
                        max(s.top_k for s in sites))


def _read_config(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: no readable config.json ({exc})") from exc
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: config.json is not a JSON object")
    return raw


@dataclass
class RolloutRouting:
    """One trajectory's routing as an engine returned it, checked and put on the token axis."""

    ids: dict[str, str]  # the id fields the record carried (trajectory_id, id, task_id, trial, ...)
    token_ids: np.ndarray  # (N,) int64: the sequence the engine ran, prompt and output
    experts: np.ndarray  # (N, MoE layers, top_k) int16: expert ids; -1 where the engine returned no routing
    fmt: str  # sglang, vllm or npz
    file: str
    where: str  # "line 3", "record 0", "file"
    trajectory_id: str = ""  # the corpus trajectory it belongs to, once resolved
    notes: list[str] = field(default_factory=list)

    @property
    def routed(self) -> np.ndarray:
        """(N,) bool: tokens with routing in every MoE layer."""
        return np.asarray((self.experts >= 0).all(axis=(1, 2)))

    def problem(self, reason: str) -> Problem:
        """A problem report located at this record."""
        return Problem(self.file, self.where, reason)


# --- reading files ----------------------------------------------------------------------------------
def detect_format(value: Any) -> str | None:
    """sglang, vllm or None for one parsed JSON record, by its content."""
    if not isinstance(value, dict):
        return None
    meta = value.get("meta_info")
    if isinstance(meta, dict) and "routed_experts" in meta:
        return "sglang"
    routed = value.get("routed_experts")
    if isinstance(routed, str):
        return "sglang"
    if isinstance(routed, list) or isinstance(value.get("prompt_routed_experts"), list):
        return "vllm"
    return None


def _is_npz(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def _json_records(path: Path) -> Iterator[Raw | Problem]:
    """Records of a JSONL file, a JSON array or a single JSON object, chosen by content.

    The importers' bounded reader: a rollout line can be tens of megabytes, and it is split without
    holding more than one record.
    """
    yield from iter_records(path)


def read_rollouts(paths: Iterable[Path | str], shape: RoutingShape,
                  fmt: str | None = None) -> tuple[list[RolloutRouting], list[Problem]]:
    """Read and check every record of the given files; bad records come back as problems."""
    if fmt is not None and fmt not in FORMATS:
        raise RecordError(f"unknown rollout format {fmt!r}; choose one of {', '.join(FORMATS)}")
    good: list[RolloutRouting] = []
    problems: list[Problem] = []
    for p in map(Path, paths):
        if not p.is_file():
            problems.append(Problem(str(p), "file", "no such file"))
            continue
        for item in _file_records(p, shape, fmt):
            if isinstance(item, Problem):
                problems.append(item)
            else:
                good.append(item)
    return good, problems


def _file_records(path: Path, shape: RoutingShape, fmt: str | None) -> Iterator[RolloutRouting | Problem]:
    if _is_npz(path):
        if fmt not in (None, "npz"):
            yield Problem(str(path), "file", f"an .npz archive, not {fmt} JSONL")
            return
        try:
            yield _npz_record(path, shape)
        except RecordError as exc:
            yield Problem(str(path), "file", str(exc))
        return
    if fmt == "npz":
        yield Problem(str(path), "file", "not an .npz archive")
        return
    for raw in _json_records(path):
        if isinstance(raw, Problem):
            yield raw
            continue
        try:
            yield _json_record(raw, shape, fmt)
        except RecordError as exc:
            yield Problem(raw.file, raw.where, str(exc))


def _json_record(raw: Raw, shape: RoutingShape, fmt: str | None) -> RolloutRouting:
    value = raw.value
    found = detect_format(value)
    if found is None:
        raise RecordError("not a rollout record: expected `routed_experts` (base64 or nested lists) or "
                          "`meta_info.routed_experts`, beside `token_ids`")
    if fmt is not None and found != fmt:
        raise RecordError(f"a {found} record, but --format {fmt} was given")
    tokens = _token_ids(value.get("token_ids"))
    meta = value.get("meta_info") if isinstance(value.get("meta_info"), dict) else {}
    start = _start_len(value.get("start_len", meta.get("routed_experts_start_len", 0)), len(tokens))
    if found == "sglang":
        text = meta.get("routed_experts", value.get("routed_experts"))
        if not isinstance(text, str):
            raise RecordError("routed_experts is not a base64 string")
        rows = _decode_flat(text, shape, len(tokens) - start)
    else:
        # newer vLLM splits the prompt's rows (response level) from the generated tokens' rows (per choice)
        parts = [_nested(value[k], k) for k in ("prompt_routed_experts", "routed_experts") if value.get(k) is not None]
        if not parts:
            raise RecordError("routed_experts is null (vLLM returns None for preempted requests)")
        filled = [part for part in parts if part.size]
        try:
            rows = np.concatenate(filled) if filled else parts[0]
        except ValueError as exc:
            raise RecordError("prompt_routed_experts and routed_experts differ in layers or top-k") from exc
    ids = {k: str(value[k]) for k in (*ID_KEYS, "task_id", "trial") if value.get(k) is not None}
    if "id" not in ids and meta.get("id") is not None:
        ids["id"] = str(meta["id"])
    return RolloutRouting(ids, tokens, _on_token_axis(rows, shape, len(tokens), start), found, raw.file, raw.where)


def _npz_record(path: Path, shape: RoutingShape) -> RolloutRouting:
    try:
        with np.load(path, allow_pickle=False) as data:  # never unpickle objects from a file we were handed
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise RecordError(f"not a readable .npz of plain arrays ({str(exc)[:160]})") from exc
    for key in ("token_ids", "routed_experts"):
        if key not in arrays:
            raise RecordError(f"no `{key}` array (it has: {', '.join(sorted(arrays)) or 'nothing'})")
    tokens = _token_ids(arrays["token_ids"])
    start = _start_len(arrays["start_len"].item() if "start_len" in arrays else 0, len(tokens))
    rows = arrays["routed_experts"]
    if rows.dtype.kind not in "iu":
        raise RecordError(f"routed_experts holds {rows.dtype}, not integer expert ids")
    if "moe_layers" in arrays:
        layers = tuple(int(x) for x in np.asarray(arrays["moe_layers"]).reshape(-1))
        if rows.ndim == 3 and rows.shape[1] == len(layers) and layers != shape.moe_layers:
            raise RecordError(f"moe_layers {list(layers)} are not the checkpoint's MoE layers "
                              f"{list(shape.moe_layers)}: recorded with another model?")
    tid = str(arrays["trajectory_id"].item()) if "trajectory_id" in arrays else path.stem
    return RolloutRouting({"trajectory_id": tid}, tokens, _on_token_axis(rows, shape, len(tokens), start), "npz",
                          str(path), "file")


def _token_ids(value: Any) -> np.ndarray:
    if value is None:
        raise RecordError("no token_ids: the rollout's token ids are needed to find its tokens in the trajectory")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise RecordError("token_ids is not a list of integers") from exc
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise RecordError("token_ids is not a flat list of integers")
    if arr.size > MAX_TOKENS:
        raise RecordError(f"{arr.size:,} token ids; more than {MAX_TOKENS:,} is not a trajectory")
    if arr.size and arr.min() < 0:
        raise RecordError("token_ids has negative ids")
    return arr.astype(np.int64)


def _start_len(value: Any, n: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise RecordError(f"start_len is {value!r}, not an integer")
    if not 0 <= int(value) <= max(0, n - 1):
        raise RecordError(f"start_len {value} is outside [0, {max(0, n - 1)}] for {n} token ids")
    return int(value)


def _nested(value: Any, key: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged lists
        raise RecordError(f"{key} is not a regular (tokens, layers, top-k) nest of lists") from exc
    if arr.size == 0:
        return np.zeros((0, 0, 0), np.int64)
    if arr.ndim != 3 or arr.dtype.kind not in "iu":
        raise RecordError(f"{key} is not a regular (tokens, layers, top-k) nest of integer lists "
                          f"(got {arr.ndim} dimensions of {arr.dtype})")
    return arr


def _decode_flat(text: str, shape: RoutingShape, max_rows: int) -> np.ndarray:
    """SGLang's base64 int32, reshaped with whichever layer width fits the token count."""
    widths = list(dict.fromkeys((shape.num_hidden_layers, len(shape.moe_layers))))
    for width in widths:
        try:
            arr = decode_sglang(text, width, shape.top_k)
        except RecordError:
            continue
        if arr.shape[0] <= max_rows:
            return arr
    return decode_sglang(text, widths[0], shape.top_k)  # raises, or returns rows that _on_token_axis refuses


def _on_token_axis(rows: np.ndarray, shape: RoutingShape, n: int, start: int) -> np.ndarray:
    """Check an engine's (rows, layers, top-k) array and place it on the token axis (N, MoE layers, k)."""
    n_moe = len(shape.moe_layers)
    if rows.size == 0:
        rows = np.zeros((0, n_moe, shape.top_k), np.int64)
    if rows.ndim != 3:
        raise RecordError(f"routed_experts has {rows.ndim} dimensions, expected (tokens, layers, top-k)")
    r, width, k = rows.shape
    if k != shape.top_k:
        raise RecordError(f"routed_experts has top-{k} slots but the checkpoint routes each token to "
                          f"{shape.top_k} experts ({shape.describe()})")
    if width == shape.num_hidden_layers and width != n_moe:
        dense = [layer for layer in range(width) if layer not in shape.moe_layers]
        stray = rows[:, dense, :]
        if stray.size and not (np.all(stray == -1) or np.all(stray == 0)):
            bad = dense[int(np.flatnonzero((stray != -1).any(axis=(0, 2)) & (stray != 0).any(axis=(0, 2)))[0])]
            raise RecordError(f"layer {bad} is dense in this checkpoint but the file routes it to experts: "
                              "recorded with another model?")
        rows = rows[:, list(shape.moe_layers), :]
    elif width != n_moe:
        widths = sorted({shape.num_hidden_layers, n_moe})
        raise RecordError(f"routed_experts has {width} layers; expected {' or '.join(map(str, widths))} "
                          f"({shape.describe()})")
    if r > n - start:
        raise RecordError(f"routed_experts has {r:,} rows but start_len {start} leaves only {n - start:,} token ids "
                          "(rows cover token_ids[start_len:])")
    _check_ids(rows, shape.num_experts)
    out = np.full((n, n_moe, shape.top_k), -1, dtype=np.int16)
    out[start:start + r] = rows
    return out


def _check_ids(rows: np.ndarray, num_experts: int) -> None:
    """Expert ids in [0, E), -1 only for a whole (token, layer), no expert twice in one top-k."""
    if rows.size == 0:
        return
    if rows.min() < -1 or rows.max() >= num_experts:
        bad = int(rows.max()) if rows.max() >= num_experts else int(rows.min())
        raise RecordError(f"expert id {bad} is outside [0, {num_experts}) for this checkpoint")
    missing = rows == -1
    partial = missing.any(-1) & ~missing.all(-1)
    if partial.any():
        t, layer = np.argwhere(partial)[0]
        raise RecordError(f"row {t}, layer column {layer}: some top-k slots are -1 and some are not")
    ordered = np.sort(rows, axis=-1)
    twice = ((ordered[..., 1:] == ordered[..., :-1]) & (ordered[..., 1:] >= 0)).any(-1)
    if twice.any():
        t, layer = np.argwhere(twice)[0]
        raise RecordError(f"row {t}, layer column {layer}: an expert appears twice in one top-k "
                          f"({rows[t, layer].tolist()})")
