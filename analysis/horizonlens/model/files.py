"""The files of a checkpoint folder, read as untrusted input: regular files of bounded size, checked before use.

A checkpoint comes from someone else. Before transformers opens anything, every entry of the folder must be
a regular file (a link to one is fine): a FIFO or a link to `/dev/zero` would make loading, or just computing
the checkpoint id, wait forever. Configuration, tokenizer and template files are small, so they are capped;
safetensors headers are checked against the file's size, so a truncated or garbage weight file is named
with the reason instead of failing (or hanging) inside the loader. Files are opened without blocking and
checked on the open descriptor, so swapping a file for a FIFO after the check changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from horizonlens.errors import CheckpointError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES, ".gguf", ".onnx", ".h5", ".msgpack")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model")
META_MAX_BYTES = 64 * 2**20  # config, tokenizer and template files: the largest real tokenizer.json is ~35 MB
SAFETENSORS_HEADER_MAX = 100 * 2**20  # the safetensors library's own limit
MAX_ENTRIES = 10_000  # files looked at in one checkpoint folder
FULL_HASH_LIMIT = 256 * 2**20  # weight files up to this size are hashed whole; larger ones are sampled
SAMPLE_BYTES = 4 * 2**20
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4,
                "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "C64": 8}


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block "
                       "device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def _is_meta(name: str) -> bool:
    """Files transformers reads whole into memory (configuration, tokenizer, templates): these are capped."""
    return name in TOKENIZER_FILES or name.endswith((".json", ".jinja", ".txt", ".model", ".tiktoken"))


def open_regular(path: Path, limit: int | None = None) -> tuple[int, int]:
    """(descriptor, size) of a checkpoint file that is a regular file of at most `limit` bytes; else CheckpointError.

    Opened with O_NONBLOCK (a FIFO does not block the open) and checked with fstat on the descriptor.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror})") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise CheckpointError(f"{path}: {_kind(st.st_mode)}, not a regular file; a checkpoint holds only files")
    if limit is not None and st.st_size > limit:
        os.close(fd)
        raise CheckpointError(f"{path}: {st.st_size / 2**20:,.0f} MB, more than the {limit / 2**20:,.0f} MB such a "
                              "file may have")
    return fd, st.st_size


def read_bytes(path: Path, limit: int = META_MAX_BYTES) -> bytes:
    """The whole content of a small checkpoint file (regular, at most `limit` bytes)."""
    fd, _ = open_regular(path, limit)
    with os.fdopen(fd, "rb") as fh:
        return fh.read(limit + 1)[:limit]


def check_folder(path: Path) -> None:
    """Every entry of a checkpoint folder (and its subfolders) is a regular file; small files are small."""
    seen = 0
    for folder, dirs, files in os.walk(path, followlinks=False):
        for name in files + dirs:
            seen += 1
            if seen > MAX_ENTRIES:
                raise CheckpointError(f"{path}: more than {MAX_ENTRIES:,} entries; is this a checkpoint folder?")
            entry = Path(folder) / name
            try:
                st = entry.stat()  # follows links: a link to a regular file is fine
            except OSError as exc:
                raise CheckpointError(f"{entry}: cannot be read ({exc.strerror}); a broken link?") from exc
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise CheckpointError(f"{entry}: {_kind(st.st_mode)}, not a regular file; a checkpoint holds only "
                                      "files (remove it)")
            if _is_meta(name) and st.st_size > META_MAX_BYTES:
                raise CheckpointError(f"{entry}: {st.st_size / 2**20:,.0f} MB, more than the "
                                      f"{META_MAX_BYTES / 2**20:,.0f} MB a configuration or tokenizer file may have")


def checked_config(path: Path) -> dict[str, Any]:
    """The config of a checkpoint folder whose every entry passed `check_folder`: what reads a checkpoint calls first.

    The one way a checkpoint is opened for its configuration, whoever reads it (replay, `routing import`,
    `build-checkpoint`, bench): a path that is not a folder, a special file anywhere in it or a config that is not
    a JSON object is a CheckpointError, never a hang.
    """
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a directory (expected a checkpoint with config.json, *.safetensors "
                              "and a tokenizer)")
    if not (path / "config.json").exists() and not (path / "config.json").is_symlink():
        raise CheckpointError(f"{path}: no config.json; is this a transformers checkpoint?")
    check_folder(path)
    return read_config(path)


def read_config(path: Path) -> dict[str, Any]:
    """config.json as a JSON object (a regular file of bounded size); CheckpointError says why it is not one."""
    data = read_bytes(path / "config.json")
    try:
        config = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path / 'config.json'}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path / 'config.json'}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                              f"column {exc.colno})") from exc
    except RecursionError as exc:
        raise CheckpointError(f"{path / 'config.json'}: JSON nested too deeply") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{path / 'config.json'}: a JSON {type(config).__name__}, expected an object "
                              "({\"model_type\": ..., ...})")
    return config


def check_safetensors(file: Path) -> None:
    """The header of a safetensors file parses and every tensor lies inside the file (not truncated, not garbage)."""
    fd, size = open_regular(file)
    with os.fdopen(fd, "rb") as fh:
        if size < 8:
            raise CheckpointError(f"{file}: {size} bytes, too short for a safetensors file (truncated?)")
        n = int.from_bytes(fh.read(8), "little")
        if n > min(size - 8, SAFETENSORS_HEADER_MAX):
            raise CheckpointError(f"{file}: the header claims {n:,} bytes but the file has {size:,}: not a "
                                  "safetensors file, or truncated")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{file}: the safetensors header is not valid JSON ({exc}); the file is damaged") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{file}: the safetensors header is not a JSON object; the file is damaged")
    data_bytes = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        _check_tensor(file, name, info, data_bytes)


def _check_tensor(file: Path, name: str, info: Any, data_bytes: int) -> None:
    try:
        begin, end = (int(x) for x in info["data_offsets"])
        shape = [int(d) for d in info["shape"]]
        dtype = str(info["dtype"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{file}: tensor {name!r} has a malformed entry in the header; the file is "
                              "damaged") from exc
    if not 0 <= begin <= end or any(d < 0 for d in shape):
        raise CheckpointError(f"{file}: tensor {name!r} has impossible offsets or shape; the file is damaged")
    if end > data_bytes:
        raise CheckpointError(f"{file}: tensor {name!r} ends at byte {end:,} of the data but the file holds only "
                              f"{data_bytes:,}: the file is truncated (copy or download it again)")
    width = _DTYPE_BYTES.get(dtype)
    if width is not None and end - begin != math.prod(shape) * width:
        raise CheckpointError(f"{file}: tensor {name!r} ({dtype}, shape {shape}) should take "
                              f"{math.prod(shape) * width:,} bytes but takes {end - begin:,}; the file is damaged")


def hash_file(h: "hashlib._Hash", path: Path, limit: int | None) -> None:
    """Add a checkpoint file to a running hash: whole up to FULL_HASH_LIMIT bytes, else 16 spread samples."""
    fd, size = open_regular(path, limit)
    h.update(f"{path.name}:{size}".encode())
    with os.fdopen(fd, "rb") as fh:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: fh.read(2**20), b""):
                h.update(block)
        else:  # header (tensor names, dtypes, offsets) plus samples spread over the file
            for i in range(16):
                fh.seek(int((size - SAMPLE_BYTES) * i / 15))
                h.update(fh.read(SAMPLE_BYTES))


def context_length(config: dict[str, Any], default: int = 4096) -> int:
    """The model's context (max_position_embeddings) from config.json, text config first; `default` if unsaid."""
    text = config.get("text_config")
    for source in (text if isinstance(text, dict) else {}, config):
        value = source.get("max_position_embeddings")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default
