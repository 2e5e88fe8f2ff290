"""Reading the routing a rollout engine returned (vLLM, SGLang, or an .npz an RL framework saved).

`horizonlens routing import` reads these files (the formats are described in
`horizonlens.model.rollout` and docs/routing.md). Every record is checked against the checkpoint's
routing shape before anything is stored: the layer axis must be either all decoder layers (SGLang,
and vLLM's own buffer) or the MoE layers only (the issue's vLLM form), the top-k axis must be the
router's top-k, expert ids must lie in [0, E), and the rows must fit the token ids. A record that fails
is reported with its file, record and reason (`RecordError`) and the others still import.

Files are read one record at a time (`iter_rollouts`): JSON through the importers' bounded reader, `.npz`
through `ingest.arrays`, which checks each array's header against these limits before decompressing it
and reads only the arrays named here. A record's routing is kept as the engine's rows (`rows`, the
tokens from `start` on), never spread over every token id: a record with millions of token ids and
routing for a few costs memory for the few.

Rows cover tokens `start .. start + len(rows) - 1`; tokens outside them have no routing (before
`start_len`, the last token, which was sampled and never fed through the model), and so has a row the
engine filled with -1 (vLLM's prefix-cache sentinel). Columns are the checkpoint's MoE layers; the slots of
dense layers (-1 from SGLang, 0 from vLLM's full-width buffer) are dropped.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from horizonlens.errors import CheckpointError, RecordError
from horizonlens.ingest.arrays import NpzFile
from horizonlens.ingest.base import MAX_ID_CHARS
from horizonlens.ingest.readers import Problem, Raw, iter_records
from horizonlens.ingest.zips import MAX_MEMBER_BYTES
from horizonlens.model.rollout import decode_sglang

FORMATS = ("sglang", "vllm", "npz")
# Keys a record may carry its trajectory's id under, most specific first (see resolve_ids).
ID_KEYS = ("trajectory_id", "id", "instance_id", "session_id")
MAX_TOKENS = 4_000_000  # token ids per record: far beyond any context, small enough to refuse garbage early
MAX_ROUTING_BYTES = MAX_MEMBER_BYTES  # an .npz's routed_experts array (~200k tokens at 40 layers x top-8 in int32)
MAX_LAYERS = 10_000  # entries of an .npz's moe_layers
BLOCK_ROWS = 65_536  # routing rows checked and converted at a time


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

    The folder gets the checks every reader of a checkpoint applies (`check_files`: regular files of
    bounded size, whole safetensors, a config that parses). The model is then built on PyTorch's meta
    device and its routers found with the same predicate the replay uses, so which layers are dense
    (DeepSeek's first_k_dense_replace, Qwen's mlp_only_layers, ...) comes from transformers itself rather
    than from per-architecture rules here.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from horizonlens.model.loader import check_files, model_config
    from horizonlens.model.routers import find_routers

    path = Path(checkpoint)
    check_files(path, allow_pickle=True)  # the weights are never loaded here
    config, _ = model_config(path)
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception as exc:  # any failure inside transformers on a config from elsewhere is the checkpoint's
        raise CheckpointError(f"{path}: transformers cannot build the model from config.json "
                              f"({type(exc).__name__}: {exc})") from exc
    sites = find_routers(model)
    if not sites:
        raise CheckpointError(f"{path}: the model has no router modules; there is no routing to compare")
    layers = int(getattr(config, "num_hidden_layers", 0) or max(s.layer for s in sites) + 1)
    return RoutingShape(layers, tuple(s.layer for s in sites), max(s.num_experts for s in sites),
                        max(s.top_k for s in sites))


@dataclass
class RolloutRef:
    """Who a rollout record is, without its arrays: what an import keeps of every record between its passes."""

    ids: dict[str, str]  # the id fields the record carried (trajectory_id, id, task_id, trial, ...)
    fmt: str  # sglang, vllm or npz
    file: str
    where: str  # "line 3", "record 0", "file"
    tokens: int  # token ids in the record
    trajectory_id: str = ""  # the corpus trajectory it belongs to, once resolved

    @property
    def key(self) -> tuple[str, str]:
        """(file, where): the record's place, the same on every read of the file."""
        return self.file, self.where

    def problem(self, reason: str) -> Problem:
        """A problem report located at this record."""
        return Problem(self.file, self.where, reason)


@dataclass
class RolloutRouting:
    """One trajectory's routing as an engine returned it, checked, with its rows placed on the token axis."""

    ids: dict[str, str]  # the id fields the record carried (trajectory_id, id, task_id, trial, ...)
    token_ids: np.ndarray  # (N,) int64: the sequence the engine ran, prompt and output
    rows: np.ndarray  # (R, MoE layers, top_k) int16: the experts of tokens start .. start + R - 1; -1: no routing
    start: int  # the token the first row belongs to (the engine's start_len)
    fmt: str  # sglang, vllm or npz
    file: str
    where: str  # "line 3", "record 0", "file"
    trajectory_id: str = ""  # the corpus trajectory it belongs to, once resolved
    notes: list[str] = field(default_factory=list)

    @property
    def routed(self) -> np.ndarray:
        """(N,) bool: tokens with routing in every MoE layer."""
        out = np.zeros(len(self.token_ids), dtype=bool)
        if len(self.rows):
            out[self.start:self.start + len(self.rows)] = (self.rows >= 0).all(axis=(1, 2))
        return out

    def experts_at(self, positions: np.ndarray) -> np.ndarray:
        """(M, MoE layers, top_k) int16: the experts of these token positions (each must be routed)."""
        return self.rows[np.asarray(positions, dtype=np.int64) - self.start]

    def ref(self) -> RolloutRef:
        """The record without its arrays."""
        return RolloutRef(dict(self.ids), self.fmt, self.file, self.where, len(self.token_ids), self.trajectory_id)

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


def iter_rollouts(paths: Iterable[Path | str], shape: RoutingShape,
                  fmt: str | None = None) -> Iterator[RolloutRouting | Problem]:
    """Every record of the given files, read and checked one at a time; a bad record or file is a `Problem`."""
    if fmt is not None and fmt not in FORMATS:
        raise RecordError(f"unknown rollout format {fmt!r}; choose one of {', '.join(FORMATS)}")
    for p in map(Path, paths):
        try:
            mode = os.stat(p).st_mode
        except OSError as exc:
            yield Problem(str(p), "file", f"cannot be read ({exc.strerror or exc})")
            continue
        if not stat.S_ISREG(mode):
            yield Problem(str(p), "file", "not a regular file (a folder, FIFO or device)")
            continue
        try:
            yield from _file_records(p, shape, fmt)
        except OSError as exc:  # the file vanished or became unreadable while it was read
            yield Problem(str(p), "file", f"cannot be read ({exc.strerror or exc})")


def read_rollouts(paths: Iterable[Path | str], shape: RoutingShape,
                  fmt: str | None = None) -> tuple[list[RolloutRouting], list[Problem]]:
    """Every record of the given files at once (`iter_rollouts` holds one): the good ones and the problems."""
    good: list[RolloutRouting] = []
    problems: list[Problem] = []
    for item in iter_rollouts(paths, shape, fmt):
        (problems if isinstance(item, Problem) else good).append(item)  # type: ignore[arg-type]
    return good, problems


def _file_records(path: Path, shape: RoutingShape, fmt: str | None) -> Iterator[RolloutRouting | Problem]:
    with path.open("rb") as fh:
        is_npz = fh.read(4) == b"PK\x03\x04"
    if is_npz:
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
    for raw in iter_records(path):  # the importers' bounded reader: one record in memory at a time
        if isinstance(raw, Problem):
            yield raw
            continue
        try:
            yield _json_record(raw, shape, fmt)
        except RecordError as exc:
            yield Problem(raw.file, raw.where, str(exc))


def _ids(value: dict[str, Any], keys: Iterable[str]) -> dict[str, str]:
    """The id fields of a record that are text or whole numbers (anything else is not an id)."""
    out = {}
    for k in keys:
        v = value.get(k)
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            continue
        text = str(v)
        if len(text) > MAX_ID_CHARS:
            raise RecordError(f"{k} is longer than {MAX_ID_CHARS} characters")
        out[k] = text
    return out


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
    ids = _ids(value, (*ID_KEYS, "task_id", "trial"))
    if "id" not in ids:
        ids.update(_ids(meta, ("id",)))
    return RolloutRouting(ids, tokens, _moe_rows(rows, shape, len(tokens), start), start, found, raw.file, raw.where)


def _npz_record(path: Path, shape: RoutingShape) -> RolloutRouting:
    """The arrays a rollout needs, each header checked before its data is read (ingest.arrays)."""
    with NpzFile(path) as npz:
        for key in ("token_ids", "routed_experts"):
            if key not in npz.names:
                raise RecordError(f"no `{key}` array (it has: {', '.join(sorted(npz.names)) or 'nothing'})")
        tokens = _token_ids(_plain(npz, "token_ids", (1,), "iu", MAX_TOKENS * 8))
        start = _start_len(_scalar(npz, "start_len", "iu").item() if "start_len" in npz.names else 0, len(tokens))
        head = npz.header("routed_experts")
        if head.dtype.kind not in "iu":
            raise RecordError(f"routed_experts holds {head.dtype}, not integer expert ids")
        if len(head.shape) == 3:  # refuse a wrong shape before reading the data
            _check_axes(head.shape[1], head.shape[2], shape)
            if head.shape[0] > len(tokens) - start:
                raise RecordError(_too_many_rows(head.shape[0], start, len(tokens)))
        rows = _plain(npz, "routed_experts", (3,), "iu", MAX_ROUTING_BYTES)
        if "moe_layers" in npz.names:
            layers = tuple(int(x) for x in _plain(npz, "moe_layers", (0, 1), "iu", MAX_LAYERS * 8).reshape(-1))
            if rows.shape[1] == len(layers) and layers != shape.moe_layers:
                raise RecordError(f"moe_layers {list(layers)} are not the checkpoint's MoE layers "
                                  f"{list(shape.moe_layers)}: recorded with another model?")
        tid = _text(_scalar(npz, "trajectory_id", "US")) if "trajectory_id" in npz.names else path.stem
    return RolloutRouting({"trajectory_id": tid}, tokens, _moe_rows(rows, shape, len(tokens), start), start, "npz",
                          str(path), "file")


def _plain(npz: NpzFile, name: str, ndims: tuple[int, ...], kinds: str, max_bytes: int) -> np.ndarray:
    """Array `name` if its header says `ndims` dimensions of a dtype of these kinds, within `max_bytes`."""
    head = npz.header(name)
    if len(head.shape) not in ndims:
        raise RecordError(f"{name} has {len(head.shape)} dimensions (shape {list(head.shape)}); expected "
                          f"{' or '.join(map(str, ndims))}")
    if head.dtype.kind not in kinds:
        raise RecordError(f"{name} holds {head.dtype} values, not {'integers' if kinds == 'iu' else 'text'}")
    return npz.read(name, max_bytes)


def _scalar(npz: NpzFile, name: str, kinds: str) -> np.ndarray:
    """A one-value array (shape () or (1,)) such as start_len or trajectory_id."""
    arr = _plain(npz, name, (0, 1), kinds, MAX_ID_CHARS * 4)
    if arr.size != 1:
        raise RecordError(f"{name} should hold one value, not {arr.size}")
    return arr


def _text(arr: np.ndarray) -> str:
    value = arr.reshape(-1)[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError("trajectory_id is not UTF-8 text") from exc
    text = str(value)
    if not text.strip() or len(text) > MAX_ID_CHARS:
        raise RecordError(f"trajectory_id should be 1 to {MAX_ID_CHARS} characters of text")
    return text


def _token_ids(value: Any) -> np.ndarray:
    if value is None:
        raise RecordError("no token_ids: the rollout's token ids are needed to find its tokens in the trajectory")
    if isinstance(value, list) and len(value) > MAX_TOKENS:
        raise RecordError(f"{len(value):,} token ids; more than {MAX_TOKENS:,} is not a trajectory")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise RecordError("token_ids is not a list of integers") from exc
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise RecordError("token_ids is not a flat list of integers")
    if arr.size > MAX_TOKENS:
        raise RecordError(f"{arr.size:,} token ids; more than {MAX_TOKENS:,} is not a trajectory")
    if arr.size and arr.min() < 0:
        raise RecordError("token_ids has negative ids")
    if arr.size and arr.max() > np.iinfo(np.int64).max:
        raise RecordError("token_ids has ids past 2**63")
    return arr.astype(np.int64)


def _start_len(value: Any, n: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise RecordError(f"start_len is {str(value)[:40]!r}, not an integer")
    if not 0 <= int(value) <= max(0, n - 1):
        raise RecordError(f"start_len {value} is outside [0, {max(0, n - 1)}] for {n} token ids")
    return int(value)


def _nested(value: Any, key: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:  # ragged lists, ids past int64
        raise RecordError(f"{key} is not a regular (tokens, layers, top-k) nest of lists") from exc
    if arr.size == 0:
        return np.zeros((0, 0, 0), np.int64)
    if arr.ndim != 3 or arr.dtype.kind not in "iu":
        raise RecordError(f"{key} is not a regular (tokens, layers, top-k) nest of integer lists "
                          f"(got {arr.ndim} dimensions of {arr.dtype})")
    return arr


def _decode_flat(text: str, shape: RoutingShape, max_rows: int) -> np.ndarray:
    """SGLang's base64 int32, reshaped with whichever layer width fits the token count."""
    if len(text) * 3 // 4 > MAX_ROUTING_BYTES:
        raise RecordError(f"routed_experts holds {len(text) * 3 // 4 / 2**20:,.0f} MB; at most "
                          f"{MAX_ROUTING_BYTES / 2**20:,.0f} MB are read")
    widths = list(dict.fromkeys((shape.num_hidden_layers, len(shape.moe_layers))))
    for width in widths:
        try:
            arr = decode_sglang(text, width, shape.top_k)
        except RecordError:
            continue
        if arr.shape[0] <= max_rows:
            return arr
    return decode_sglang(text, widths[0], shape.top_k)  # raises, or returns rows that _moe_rows refuses


def _check_axes(width: int, k: int, shape: RoutingShape) -> None:
    """The layer and top-k axes of an engine's routing fit the checkpoint."""
    n_moe = len(shape.moe_layers)
    if k != shape.top_k:
        raise RecordError(f"routed_experts has top-{k} slots but the checkpoint routes each token to "
                          f"{shape.top_k} experts ({shape.describe()})")
    if width not in (shape.num_hidden_layers, n_moe):
        widths = sorted({shape.num_hidden_layers, n_moe})
        raise RecordError(f"routed_experts has {width} layers; expected {' or '.join(map(str, widths))} "
                          f"({shape.describe()})")


def _too_many_rows(rows: int, start: int, n: int) -> str:
    return (f"routed_experts has {rows:,} rows but start_len {start} leaves only {n - start:,} token ids "
            "(rows cover token_ids[start_len:])")


def _moe_rows(rows: np.ndarray, shape: RoutingShape, n: int, start: int) -> np.ndarray:
    """Check an engine's (rows, layers, top-k) array; its MoE layers' columns as int16, block by block."""
    n_moe = len(shape.moe_layers)
    if rows.size == 0:
        return np.zeros((0, n_moe, shape.top_k), np.int16)
    if rows.ndim != 3:
        raise RecordError(f"routed_experts has {rows.ndim} dimensions, expected (tokens, layers, top-k)")
    r, width, k = rows.shape
    _check_axes(width, k, shape)
    if r > n - start:
        raise RecordError(_too_many_rows(r, start, n))
    dense = [layer for layer in range(width) if layer not in shape.moe_layers] \
        if width == shape.num_hidden_layers and width != n_moe else []
    out = np.empty((r, n_moe, k), dtype=np.int16)
    for a in range(0, r, BLOCK_ROWS):  # temporaries of one block, not of the whole record
        block = rows[a:a + BLOCK_ROWS]
        if dense:
            _check_dense(block[:, dense, :], dense)
            block = block[:, list(shape.moe_layers), :]
        _check_ids(block, shape.num_experts, a)
        out[a:a + len(block)] = block
    return out


def _check_dense(stray: np.ndarray, dense: list[int]) -> None:
    """The slots of dense layers hold the engine's filler only (-1 from SGLang, 0 from vLLM)."""
    if stray.size and not (np.all(stray == -1) or np.all(stray == 0)):
        bad = dense[int(np.flatnonzero((stray != -1).any(axis=(0, 2)) & (stray != 0).any(axis=(0, 2)))[0])]
        raise RecordError(f"layer {bad} is dense in this checkpoint but the file routes it to experts: "
                          "recorded with another model?")


def _check_ids(rows: np.ndarray, num_experts: int, first: int = 0) -> None:
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
        raise RecordError(f"row {first + t}, layer column {layer}: some top-k slots are -1 and some are not")
    ordered = np.sort(rows, axis=-1)
    twice = ((ordered[..., 1:] == ordered[..., :-1]) & (ordered[..., 1:] >= 0)).any(-1)
    if twice.any():
        t, layer = np.argwhere(twice)[0]
        raise RecordError(f"row {first + t}, layer column {layer}: an expert appears twice in one top-k "
                          f"({rows[t, layer].tolist()})")
