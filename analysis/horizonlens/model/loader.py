"""Loading a local MoE checkpoint: safetensors + config + tokenizer, no hub, no surprises.

torch and transformers are imported inside functions so that importing this module (and the
rest of `analysis`) stays cheap for the browsing parts of the app.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from horizonlens.errors import CheckpointError, HorizonLensError, NotMoEError
from horizonlens.model.files import (
    META_MAX_BYTES,
    PICKLE_SUFFIXES,
    TOKENIZER_FILES,
    check_folder,
    check_safetensors,
    checked_config,
    hash_file,
    read_bytes,
    read_config,
)
from horizonlens.model.render import HORIZONLENS_CHAT_TEMPLATE

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from horizonlens.model.routers import RouterSite

# config keys for "experts per MoE layer" and "experts per token" across architectures
EXPERT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
TOP_K_KEYS = ("num_experts_per_tok", "moe_topk", "num_selected_experts")


@dataclass
class LoadedModel:
    """A checkpoint in memory, shared by every app session: never mutated, used under `lock`."""

    path: Path
    model: "PreTrainedModel"
    tokenizer: "PreTrainedTokenizerBase"
    checkpoint_id: str
    device: "torch.device"
    dtype: "torch.dtype"
    routers: list["RouterSite"]
    max_context: int
    architecture: str
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def is_moe(self) -> bool:
        """Does the model have router modules (routing can be captured)?"""
        return bool(self.routers)

    @property
    def num_experts(self) -> int:
        """Routed experts per MoE layer (the largest, if layers differ; 0 for a dense model)."""
        return max((r.num_experts for r in self.routers), default=0)

    @property
    def top_k(self) -> int:
        """Experts each token is routed to (the largest, if layers differ; 0 for a dense model)."""
        return max((r.top_k for r in self.routers), default=0)

    def describe(self) -> dict[str, Any]:
        """What the app and the CLI show about the loaded checkpoint, JSON-ready."""
        return {"path": str(self.path), "checkpoint_id": self.checkpoint_id, "architecture": self.architecture,
                "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
                "moe_layers": [r.layer for r in self.routers], "num_experts": self.num_experts, "top_k": self.top_k,
                "max_context": self.max_context,
                "parameters": sum(p.numel() for p in self.model.parameters())}


def checkpoint_id(path: Path | str) -> str:
    """A short id from config, tokenizer and weight files: a changed checkpoint gets a new id.

    Only regular files of bounded size are read (CheckpointError otherwise), so it never hangs.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a directory (expected a checkpoint with config.json, *.safetensors "
                              "and a tokenizer)")
    h = hashlib.sha256()
    for name in ("config.json", *TOKENIZER_FILES):
        f = path / name
        if (f.exists() or f.is_symlink()) and not _replays_without(f):
            hash_file(h, f, META_MAX_BYTES)
    for f in sorted(path.glob("*.safetensors")) + sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES):
        hash_file(h, f, None)
    config = read_config(path)
    arch = (config.get("architectures") or [config.get("model_type", "model")])[0]
    # the id names a folder of the replay cache and is shown in the app: keep letters, digits and _
    name = re.sub(r"[^a-z0-9_]+", "", str(arch).lower())[:40] or "model"
    return f"{name}-{h.hexdigest()[:12]}"


def _replays_without(f: Path) -> bool:
    """Whether a checkpoint file leaves every replay as it would be without it, so it leaves the id too.

    That is the Horizon Lens chat template (the sample checkpoint's): a replay renders it piece by piece, as it
    renders a checkpoint without a template, so its cached replays stay valid whether the file is there or not.
    """
    if f.name != "chat_template.jinja":
        return False
    expected = HORIZONLENS_CHAT_TEMPLATE.encode("utf-8")
    try:
        return read_bytes(f, len(expected) + 1) == expected
    except CheckpointError:  # not a regular file, or longer: hashed (and refused) like any other
        return False


def usable_checkpoint_id(path: Path | str) -> str | None:
    """The id of the checkpoint at `path`, or None when the folder is not a usable checkpoint (nothing to show)."""
    if not str(path):
        return None
    try:
        check_files(Path(path), allow_pickle=True)
        return checkpoint_id(path)
    except (HorizonLensError, OSError, ValueError):
        return None


def check_files(path: Path, allow_pickle: bool) -> None:
    """Refuse a folder that is not a usable checkpoint (config, weights, tokenizer), before loading anything.

    Every entry must be a regular file (no FIFO, device or socket, even behind a link), configuration and
    tokenizer files must be small, config.json a JSON object, and every safetensors file whole.
    """
    checked_config(path)
    safetensors = list(path.glob("*.safetensors"))
    pickles = [p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if not safetensors and pickles and not allow_pickle:
        raise CheckpointError(f"{path}: weights are pickle files ({pickles[0].name}); loading pickle can run "
                              "arbitrary code. Convert them to safetensors, or pass --allow-pickle if you trust "
                              "this checkpoint.")
    if not safetensors and not pickles:
        raise CheckpointError(f"{path}: no weight files (*.safetensors)")
    if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise CheckpointError(f"{path}: no tokenizer files (tokenizer.json); save the tokenizer beside the weights")
    for f in safetensors:
        check_safetensors(f)


def _first_int(config: Any, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def check_moe_config(config: Any, path: Path) -> None:
    """Experts per token must be between 1 and the number of experts (else routing fails mid-replay)."""
    experts, top_k = _first_int(config, EXPERT_KEYS), _first_int(config, TOP_K_KEYS)
    if not experts or top_k is None:
        return  # a dense model, or an architecture that names these differently (checked on the routers)
    if not 1 <= top_k <= experts:
        raise CheckpointError(f"{path}: config.json routes each token to {top_k} experts but a layer has {experts}; "
                              "experts per token must be between 1 and the number of experts")


def load_tokenizer(path: Path | str, trust_remote_code: bool = False) -> Any:
    """The checkpoint's tokenizer, loaded locally after the folder's files were checked."""
    from transformers import AutoTokenizer

    path = Path(path)
    check_folder(path)
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as exc:  # any failure inside transformers on files from elsewhere is the checkpoint's
        raise CheckpointError(f"{path}: could not load the tokenizer ({type(exc).__name__}: {exc})") from exc


def resolve_device(device: str = "auto", dtype: str = "auto") -> tuple["torch.device", "torch.dtype"]:
    """auto: CUDA with bf16 when available, else CPU with fp32 (bf16 near-ties flip routing on CPU)."""
    import torch

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    if dtype == "auto":
        dt = torch.bfloat16 if dev.type == "cuda" else torch.float32
    else:
        named = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                 "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}.get(dtype)
        if named is None:
            raise CheckpointError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
        dt = named
    return dev, dt


def text_config(config: Any) -> tuple[Any, str]:
    """Multimodal checkpoints (e.g. Qwen3_5MoeForConditionalGeneration) are loaded text-only."""
    arch = (getattr(config, "architectures", None) or [type(config).__name__])[0]
    text = getattr(config, "text_config", None)
    if text is not None and "ForConditionalGeneration" in arch:
        return text, arch
    return config, arch


def model_config(path: Path, trust_remote_code: bool = False) -> tuple[Any, str]:
    """The checked config.json read by transformers (the text model's part), and the architecture's name.

    Refuses a config that asks for custom code unless `trust_remote_code`, and experts per token outside
    [1, experts]. Call after `check_files` (or `checked_config`), which make sure reading cannot hang.
    """
    from transformers import AutoConfig

    raw = read_config(path)
    if raw.get("auto_map") and not trust_remote_code:
        raise CheckpointError(f"{path}: the config asks for custom code (auto_map); running it executes code from "
                              "the checkpoint folder. Pass --trust-remote-code (replay) if you trust it.")
    # failures inside transformers on files from elsewhere are the checkpoint's: said as such, never a traceback
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: transformers cannot read config.json ({type(exc).__name__}: {exc})") from exc
    config, arch = text_config(config)
    check_moe_config(config, path)
    return config, arch


def load_checkpoint(path: Path | str, device: str = "auto", dtype: str = "auto", allow_pickle: bool = False,
                    trust_remote_code: bool = False, allow_dense: bool = False,
                    device_map: str | None = None) -> LoadedModel:
    """Load a local checkpoint for replay; CheckpointError says what is wrong."""
    import torch
    from transformers import AutoModelForCausalLM

    from horizonlens.model.routers import find_routers

    path = Path(path).resolve()
    check_files(path, allow_pickle)
    config, arch = model_config(path, trust_remote_code)
    dev, dt = resolve_device(device, dtype)
    kwargs: dict[str, Any] = {"dtype": dt, "local_files_only": True, "trust_remote_code": trust_remote_code,
                              "use_safetensors": not allow_pickle or None}
    if device_map:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(path, config=config, **kwargs)
    except Exception as exc:
        raise CheckpointError(f"{path}: could not load the weights as a causal LM ({type(exc).__name__}: "
                              f"{exc})") from exc
    if not device_map:
        # transformers wraps PreTrainedModel.to with functools.wraps, whose stub does not bind self
        model.to(dev)  # type: ignore[arg-type]
    model.eval()
    tokenizer = load_tokenizer(path, trust_remote_code)
    embedding = model.get_input_embeddings().weight
    if not isinstance(embedding, torch.Tensor):
        raise CheckpointError(f"{path}: the model's input embedding has no weight matrix")
    rows = embedding.shape[0]
    if len(tokenizer) > rows:
        raise CheckpointError(f"{path}: the tokenizer has {len(tokenizer)} tokens but the model's embedding has only "
                              f"{rows} rows; tokenizer and weights do not belong together")
    routers = find_routers(model)
    for r in routers:  # what the modules say, for architectures whose config names these differently
        if not 1 <= r.top_k <= r.num_experts:
            raise CheckpointError(f"{path}: the router of layer {r.layer} picks {r.top_k} of {r.num_experts} experts; "
                                  "experts per token must be between 1 and the number of experts")
    if not routers and not allow_dense:
        raise NotMoEError(f"{path}: {arch} has no router modules (not a mixture-of-experts model). It can still be "
                          "replayed for surprisal without routing: pass --allow-dense (or tick 'replay without "
                          "routing' in the app).")
    max_context = int(getattr(config, "max_position_embeddings", 0) or 4096)
    return LoadedModel(path=path, model=model, tokenizer=tokenizer, checkpoint_id=checkpoint_id(path),
                       device=dev if not device_map else next(model.parameters()).device, dtype=dt, routers=routers,
                       max_context=max_context, architecture=arch)
