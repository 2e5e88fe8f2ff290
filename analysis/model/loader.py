"""Loading a local MoE checkpoint: safetensors + config + tokenizer, no hub, no surprises.

torch and transformers are imported inside functions so that importing this module (and the
rest of `analysis`) stays cheap for the browsing parts of the app.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from horizonlens.errors import CheckpointError, NotMoEError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from horizonlens.model.capture import RouterSite

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model")
FULL_HASH_LIMIT = 256 * 2**20  # weight files up to this size are hashed whole; larger ones are sampled
SAMPLE_BYTES = 4 * 2**20


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


def _hash_file(h: "hashlib._Hash", path: Path) -> None:
    size = path.stat().st_size
    h.update(f"{path.name}:{size}".encode())
    with path.open("rb") as fh:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: fh.read(2**20), b""):
                h.update(block)
        else:  # header (tensor names, dtypes, offsets) plus samples spread over the file
            for i in range(16):
                fh.seek(int((size - SAMPLE_BYTES) * i / 15))
                h.update(fh.read(SAMPLE_BYTES))


def checkpoint_id(path: Path | str) -> str:
    """A short id from config, tokenizer and weight files: a changed checkpoint gets a new id."""
    path = Path(path)
    h = hashlib.sha256()
    for name in ("config.json", *TOKENIZER_FILES):
        f = path / name
        if f.exists():
            _hash_file(h, f)
    for f in sorted(path.glob("*.safetensors")) + sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES):
        _hash_file(h, f)
    config = json.loads((path / "config.json").read_text())
    arch = (config.get("architectures") or [config.get("model_type", "model")])[0]
    return f"{arch.lower()[:40]}-{h.hexdigest()[:12]}"


def check_files(path: Path, allow_pickle: bool) -> None:
    """Refuse a folder that is not a usable checkpoint (config, weights, tokenizer), before loading anything."""
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a directory (expected a checkpoint with config.json, *.safetensors "
                              "and a tokenizer)")
    if not (path / "config.json").exists():
        raise CheckpointError(f"{path}: no config.json; is this a transformers checkpoint?")
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


def load_checkpoint(path: Path | str, device: str = "auto", dtype: str = "auto", allow_pickle: bool = False,
                    trust_remote_code: bool = False, allow_dense: bool = False,
                    device_map: str | None = None) -> LoadedModel:
    """Load a local checkpoint for replay; CheckpointError says what is wrong."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from horizonlens.model.capture import find_routers

    path = Path(path).resolve()
    check_files(path, allow_pickle)
    raw = json.loads((path / "config.json").read_text())
    if raw.get("auto_map") and not trust_remote_code:
        raise CheckpointError(f"{path}: the config asks for custom code (auto_map); running it executes code from "
                              "the checkpoint folder. Pass --trust-remote-code if you trust it.")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=True)
    except (ValueError, KeyError, OSError) as exc:
        raise CheckpointError(f"{path}: transformers cannot read config.json ({exc})") from exc
    config, arch = text_config(config)
    dev, dt = resolve_device(device, dtype)
    kwargs: dict[str, Any] = {"dtype": dt, "local_files_only": True, "trust_remote_code": trust_remote_code,
                              "use_safetensors": not allow_pickle or None}
    if device_map:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(path, config=config, **kwargs)
    except (ValueError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: could not load the weights as a causal LM ({exc})") from exc
    if not device_map:
        # transformers wraps PreTrainedModel.to with functools.wraps, whose stub does not bind self
        model.to(dev)  # type: ignore[arg-type]
    model.eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
    except (ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: could not load the tokenizer ({exc})") from exc
    embedding = model.get_input_embeddings().weight
    if not isinstance(embedding, torch.Tensor):
        raise CheckpointError(f"{path}: the model's input embedding has no weight matrix")
    rows = embedding.shape[0]
    if len(tokenizer) > rows:
        raise CheckpointError(f"{path}: the tokenizer has {len(tokenizer)} tokens but the model's embedding has only "
                              f"{rows} rows; tokenizer and weights do not belong together")
    routers = find_routers(model)
    if not routers and not allow_dense:
        raise NotMoEError(f"{path}: {arch} has no router modules (not a mixture-of-experts model). It can still be "
                          "replayed for surprisal without routing: pass --allow-dense (or tick 'replay without "
                          "routing' in the app).")
    max_context = int(getattr(config, "max_position_embeddings", 0) or 4096)
    return LoadedModel(path=path, model=model, tokenizer=tokenizer, checkpoint_id=checkpoint_id(path),
                       device=dev if not device_map else next(model.parameters()).device, dtype=dt, routers=routers,
                       max_context=max_context, architecture=arch)
