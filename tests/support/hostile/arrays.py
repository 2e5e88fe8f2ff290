"""Hostile `.npz` rollout files and rollout records, built at test time without holding what they expand to.

An `.npz` is a zip of `.npy` members. `npz()` writes members whose content is given either as an array (a
normal member) or as a header and a fill byte (a member of any declared size, deflated as a stream, so a
2 GiB member of zeros is a 2 MB file and is never in memory here).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.support.hostile.zipkit import Member, deflate_stream, repeat, write_zip

MB = 1 << 20
# The Agents-A1 routing shape: 40 decoder layers, all MoE, 256 experts, top-8.
A1_LAYERS, A1_EXPERTS, A1_TOP_K = 40, 256, 8


@dataclass
class Filled:
    """A member of `shape` and `dtype` whose data is one repeated byte (never materialised)."""

    dtype: str
    shape: tuple[int, ...]
    fill: int = 0


def npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                              "shape": shape})
    return buf.getvalue()


def _member(name: str, content: np.ndarray | Filled | bytes) -> Member:
    if isinstance(content, bytes):
        return Member(f"{name}.npy", content)
    if isinstance(content, np.ndarray):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, content, allow_pickle=content.dtype.hasobject)
        return Member(f"{name}.npy", buf.getvalue())
    size = int(np.prod(content.shape)) * np.dtype(content.dtype).itemsize
    block = bytes([content.fill]) * MB

    def blocks():  # type: ignore[no-untyped-def]
        yield npy_header(content.dtype, content.shape)
        yield from repeat(block, size - size % MB)
        yield bytes([content.fill]) * (size % MB)

    payload, crc, total = deflate_stream(blocks())
    return Member(f"{name}.npy", compressed=payload, crc=crc, size=total)


def npz(path: Path, **members: np.ndarray | Filled | bytes) -> Path:
    """An .npz archive of these members (bytes: a member's raw .npy content, e.g. a damaged header)."""
    return write_zip(path, [_member(name, content) for name, content in members.items()])


def good_members(tokens: int = 6, layers: int = 3, top_k: int = 2) -> dict[str, np.ndarray]:
    """A valid rollout for a checkpoint of `layers` MoE layers and 8 experts: rows cover tokens[0:N-1]."""
    rows = np.stack([np.stack([(np.arange(top_k) + t + layer) % 8 for layer in range(layers)]) for t in
                     range(tokens - 1)]).astype(np.int32)
    return {"trajectory_id": np.array("t-1"), "token_ids": np.arange(10, 10 + tokens, dtype=np.int32),
            "routed_experts": rows, "moe_layers": np.arange(layers), "start_len": np.array(0)}


def npz_bombs(tmp: Path, size: int = 2 * 1024 * MB) -> dict[str, Path]:
    """Small .npz files that expand to `size` bytes, each in a different member (Agents-A1 shape)."""
    base = good_members(6, A1_LAYERS, A1_TOP_K)
    out = {}
    out["an unused member"] = npz(tmp / "unused.npz", **base, padding=Filled("<i1", (size,)))
    rows = size // (A1_LAYERS * A1_TOP_K * 4)
    out["routed_experts"] = npz(tmp / "routing.npz", **{**base, "token_ids": Filled("<i4", (rows + 1,)),
                                                         "routed_experts": Filled("<i4", (rows, A1_LAYERS, A1_TOP_K))})
    out["token_ids"] = npz(tmp / "tokens.npz", **{**base, "token_ids": Filled("<i8", (size // 8,))})
    return out


def long_token_record(path: Path, tokens: int = 4_000_000) -> Path:
    """An ~8 MB vLLM record: millions of token ids (all 0) and routing for one token at the Agents-A1 shape."""
    rows = [[list(range(A1_TOP_K)) for _ in range(A1_LAYERS)]]
    with path.open("w") as fh:
        fh.write('{"trajectory_id": "t-1", "routed_experts": ' + json.dumps(rows) + ', "token_ids": [')
        fh.write(",".join(["0"] * tokens))
        fh.write("]}\n")
    return path


READ_IN_CHILD = """
import json, re, sys
from horizonlens.model.rollout_files import RoutingShape, read_rollouts
def kb(field):
    return int(re.search(field + r':\\s+(\\d+)', open('/proc/self/status').read()).group(1))
layers, moe, experts, top_k = json.loads(sys.argv[2])
shape = RoutingShape(layers, tuple(moe), experts, top_k)
good, problems = read_rollouts([sys.argv[1]], shape)  # once, so what the first read loads lazily is loaded
base = kb('VmRSS')
good, problems = read_rollouts([sys.argv[1]], shape)
print(json.dumps({'records': len(good), 'problems': [p.reason for p in problems],
                  'peak_mb': (kb('VmHWM') - base) / 1024}))
"""


def read_in_child(path: Path, layers: int = A1_LAYERS, experts: int = A1_EXPERTS, top_k: int = A1_TOP_K) -> dict:
    """`read_rollouts` of one file in a fresh interpreter: records, problems, and the peak RSS the read added (MB).

    The file is read twice; the peak is counted from the resident size before the second read, so the
    modules and caches a first read loads are not counted.
    """
    import subprocess
    import sys

    shape = json.dumps([layers, list(range(layers)), experts, top_k])
    out = subprocess.run([sys.executable, "-c", READ_IN_CHILD, str(path), shape], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
