"""`horizonlens bench --shape NAME`: replay and routing storage at a real MoE release's routing shape.

For each shape (model/shapes.py: agents-a1, qwen3-30b-a3b, deepseek-v3, gpt-oss-120b) a random-init
checkpoint with the full layer and expert counts is built once under the bench's data folder, and the
sample trajectory whose rendering is closest to TARGET_TOKENS tokens is replayed whole in a fresh process
(so its peak RSS is its own). Each figure stands beside a baseline from the same run:

- replay tokens/s and peak RSS beside the bundled 4 x 16 checkpoint replaying the same trajectory;
- routing bytes per (token, MoE layer) on disk, per tier (step tier, token tier, per-step results), in
  total with `--routing tokens` and with `--routing steps`, beside the format-1 layout (one row per
  token and layer with int16 experts and float16 weights) written from the same replay.

`prepare_shape_corpus` is the reusable part: a corpus copy with that trajectory replayed through the
shape checkpoint, for the browser timings of the app at the shape (bench/shape_app.py).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pyarrow as pa

from horizonlens.sample.bundled import bundled_dir

if TYPE_CHECKING:
    from horizonlens.model.replay import ReplayResult

TARGET_TOKENS = 9_020  # a typical long sample trajectory (search-00198-t0 renders to this), as in bench/RESULTS.md
# The users' real horizon: Agents-A1's trajectories run to ~45k tokens over a few hundred steps. The long run of
# the shape bench has at least LONG_MIN_TOKENS rendered tokens and LONG_STEPS steps, as near LONG_TOKENS as the
# corpus has one.
LONG_TOKENS, LONG_MIN_TOKENS, LONG_STEPS = 44_000, 40_000, 200
CANDIDATES = 8  # runs rendered when picking the one nearest a length from a floor up
CHUNK_SIZE = 512


@dataclass(frozen=True)
class ShapeCorpus:
    """A corpus copy with one trajectory replayed through a shape checkpoint."""

    corpus: Path
    checkpoint: Path
    checkpoint_id: str
    trajectory_id: str
    tokens: int  # rendered tokens of the trajectory


def shape_checkpoint(name: str, data: Path, log: Callable[[str], None] = print) -> Path:
    """The random-init checkpoint of shape `name` at full size under `data` (built on first use)."""
    from horizonlens.model.shapes import build_shape

    out = data / "shapes" / name / "checkpoint"
    if not (out / "config.json").exists():
        log(f"  building the {name} checkpoint")
        build_shape(name, out, bundled_dir("checkpoint"))
    return out


def pick_trajectory(corpus: Path, tokenizer: Any, target: int = TARGET_TOKENS, min_steps: int = 0,
                    min_tokens: int | None = None) -> tuple[str, int]:
    """The trajectory rendering closest to `target` tokens (ties by id), and its length.

    Rendered are the trajectories of at least `min_steps` steps whose estimated length is within 25% of the
    target; with `min_tokens`, instead the CANDIDATES whose estimate is at least that and nearest the target, of
    which only renderings of at least `min_tokens` count.
    """
    from horizonlens.model.render import render
    from horizonlens.query.store import open_store

    store = open_store(corpus)
    try:
        if min_tokens is None:
            ids = store.query("SELECT trajectory_id FROM trajectories WHERE n_tokens BETWEEN ? AND ? "
                              "AND n_steps >= ? ORDER BY 1", [int(target * 0.75), int(target * 1.25), min_steps]
                              ).column(0).to_pylist()
        else:
            ids = store.query("SELECT trajectory_id FROM trajectories WHERE n_tokens >= ? AND n_steps >= ? "
                              "ORDER BY abs(n_tokens - ?), 1 LIMIT ?", [min_tokens, min_steps, target, CANDIDATES]
                              ).column(0).to_pylist()
        best: tuple[int, str, int] | None = None
        for tid in ids:
            n = len(render(tokenizer, store.steps(tid).to_pylist()))
            if n >= (min_tokens or 0) and (best is None or (abs(n - target), tid) < (best[0], best[1])):
                best = (abs(n - target), tid, n)
    finally:
        store.close()
    if best is None:
        raise RuntimeError(f"{corpus}: no trajectory of about {target:,} tokens")
    return best[1], best[2]


def copy_corpus(base: Path, out: Path) -> Path:
    """A writable copy of a corpus without its replay caches (made once, then reused)."""
    if not (out / "manifest.json").exists():
        tmp = out.with_name(f".tmp-{out.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(base, tmp, ignore=shutil.ignore_patterns("replays", ".lock"))
        tmp.replace(out)
    return out


def prepare_shape_corpus(name: str, data: Path, target: int = TARGET_TOKENS, routing: str = "tokens",
                         log: Callable[[str], None] = print, min_steps: int = 0,
                         min_tokens: int | None = None) -> ShapeCorpus:
    """A copy of the sample corpus with its ~`target`-token trajectory replayed through the `name` checkpoint.

    The trajectory has at least `min_steps` steps and `min_tokens` tokens (`pick_trajectory`). Reused when
    already there: the checkpoint (`data/shapes/<name>/`), the copy (`data/shapes/corpus`, shared by every
    shape) and the cached replay are made once; a `bench --shape` run with the same `data` leaves them there.
    `name` may also be "sample" (the bundled 4 x 16 checkpoint).
    """
    from horizonlens.model.batch import ensure_replayed
    from horizonlens.model.loader import load_checkpoint
    from horizonlens.model.replay import ReplayConfig
    from horizonlens.query.store import open_store

    checkpoint = bundled_dir("checkpoint") if name == "sample" else shape_checkpoint(name, data, log)
    # one copy: each checkpoint has its own cache
    corpus = copy_corpus(bundled_dir("corpus"), data / "shapes" / "corpus")
    loaded = load_checkpoint(checkpoint, device="cpu")
    tid, tokens = pick_trajectory(corpus, loaded.tokenizer, target, min_steps, min_tokens)
    store = open_store(corpus)
    try:
        if ensure_replayed(store, loaded, tid, ReplayConfig(chunk_size=CHUNK_SIZE, routing=routing)):
            log(f"  replayed {tid} ({tokens:,} tokens) through {name}")
    finally:
        store.close()
    return ShapeCorpus(corpus, checkpoint, loaded.checkpoint_id, tid, tokens)


def format1_table(result: ReplayResult) -> pa.Table:
    """The same replay's routing in format 1: one row per (token, layer), int16 experts, float16 weights."""
    from horizonlens.corpus.schema import ROUTING

    layers = sorted(result.routing)
    n, n_layers = result.n_replayed, len(layers)
    recs = [result.routing[layer] for layer in layers]
    k = recs[0].experts.shape[1]
    experts = np.stack([r.experts.numpy() for r in recs], axis=1).reshape(n * n_layers, k)
    weights = np.stack([r.weights.numpy() for r in recs], axis=1).reshape(n * n_layers, k)
    entropy = np.stack([r.entropy.numpy() for r in recs], axis=1).reshape(n * n_layers)
    token = np.repeat(np.arange(n, dtype=np.int32), n_layers)
    offsets = pa.array(np.arange(0, n * n_layers * k + 1, k, dtype=np.int32))
    return pa.table({
        "trajectory_id": pa.array([result.trajectory_id] * (n * n_layers), pa.string()),
        "step": pa.array(result.rendered.steps[token], pa.int32()),
        "segment": pa.array(result.rendered.segments[token].tolist(), pa.string()),
        "token_index": pa.array(token, pa.int32()),
        "token_id": pa.array(result.rendered.token_ids[token].astype(np.int32), pa.int32()),
        "layer": pa.array(np.tile(np.asarray(layers, dtype=np.int16), n), pa.int16()),
        "experts": pa.ListArray.from_arrays(offsets, pa.array(experts.reshape(-1).astype(np.int16), pa.int16())),
        "weights": pa.ListArray.from_arrays(offsets, pa.array(weights.reshape(-1).astype(np.float16),
                                                              pa.float16())),
        "entropy": pa.array(entropy.astype(np.float16), pa.float16()),
    }, schema=ROUTING)


def storage(result: ReplayResult) -> dict[str, Any]:
    """Bytes on disk of one replay, per table as the cache writes them, and per (token, MoE layer) per tier."""
    import time

    from horizonlens.replays.cache import ReplayCache
    from horizonlens.storage.atomic import write_table_atomic

    cells = max(1, result.n_replayed * len(result.routing))
    with tempfile.TemporaryDirectory() as tmp:
        cache = ReplayCache(Path(tmp), result.checkpoint_id)
        started = time.perf_counter()
        cache.write([result])
        write_s = time.perf_counter() - started
        tables = {table: sum(e.bytes for e in entries) for table, entries in cache.entries(result.trajectory_id)
                  .items() if entries}
        legacy = Path(tmp) / "format1.parquet"
        write_table_atomic(format1_table(result), legacy)  # the writer format-1 caches were written with
        format1 = legacy.stat().st_size + tables.get("steps", 0)
    step_tier = tables.get("routing_steps", 0) + tables.get("routing_segments", 0)
    token_tier = tables.get("routing_tokens", 0)
    return {"bytes": tables, "format1_bytes": format1, "token_layers": cells, "write_s": write_s,
            "per_token_layer": {"step_tier": step_tier / cells, "token_tier": token_tier / cells,
                                "replay_steps": tables.get("steps", 0) / cells,
                                "total_tokens": sum(tables.values()) / cells,
                                "total_steps_only": (sum(tables.values()) - token_tier) / cells,
                                "format1": format1 / cells}}


def measure_replay(checkpoint: Path, corpus: Path, trajectory_id: str) -> dict[str, Any]:
    """Replay one trajectory whole (chunked, on CPU) and measure it; run in a fresh process (see bench_shapes)."""
    from horizonlens.model.loader import load_checkpoint
    from horizonlens.model.replay import ReplayConfig, replay_trajectory
    from horizonlens.query.store import open_store
    from horizonlens.replays.cache import ReplayCache

    checkpoint, corpus = Path(checkpoint), Path(corpus)
    store = open_store(corpus)
    steps = store.steps(trajectory_id).to_pylist()
    loaded = load_checkpoint(checkpoint, device="cpu")
    result = replay_trajectory(loaded, trajectory_id, steps, ReplayConfig(chunk_size=CHUNK_SIZE))
    measured = storage(result)
    # keep it: prepare_shape_corpus (the browser timings) then finds this replay in the corpus copy
    ReplayCache(corpus, loaded.checkpoint_id).write([result], {**loaded.describe(), "path": checkpoint.name})
    return {"checkpoint_id": loaded.checkpoint_id, "moe_layers": len(loaded.routers), "experts": loaded.num_experts,
            "top_k": loaded.top_k, "parameters": loaded.describe()["parameters"], "tokens": result.n_replayed,
            "replay_s": result.wall_s, "tokens_per_s": result.n_replayed / result.wall_s if result.wall_s else None,
            **measured}


def bench_shapes(names: list[str], data: Path, child: Callable[[str], dict[str, Any]],
                 log: Callable[[str], None] = print, target: int = TARGET_TOKENS) -> dict[str, Any]:
    """Measure each shape and, in the same run, the bundled checkpoint on the same trajectory (the baseline).

    `child(code)` runs Python code in a fresh interpreter and returns its RESULT dict plus `peak_rss_mb`
    (bench/run.py). Returns {"trajectory", "tokens", "baseline": {...}, "shapes": {name: {...}}}.
    """
    from horizonlens.model.loader import load_checkpoint
    from horizonlens.model.shapes import SHAPES

    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        raise ValueError(f"unknown shape {unknown[0]!r}; choose from {', '.join(SHAPES)}")
    corpus = copy_corpus(bundled_dir("corpus"), data / "shapes" / "corpus")
    tid, tokens = pick_trajectory(corpus, load_checkpoint(bundled_dir("checkpoint"), device="cpu").tokenizer, target)

    def measure(checkpoint: Path) -> dict[str, Any]:
        return child(f"from horizonlens.bench.shape import measure_replay\n"
                     f"RESULT = measure_replay({str(checkpoint)!r}, {str(corpus)!r}, {tid!r})")

    log(f"shapes: {tid} ({tokens:,} tokens); baseline: the bundled checkpoint")
    baseline = measure(bundled_dir("checkpoint"))
    out: dict[str, Any] = {"trajectory": tid, "tokens": tokens, "baseline": baseline, "shapes": {}}
    for name in names:
        log(f"  {name}")
        out["shapes"][name] = measure(shape_checkpoint(name, data, log))
    return out


def report_lines(results: dict[str, Any]) -> list[str]:
    """The RESULTS.md section of a `bench --shape` run (empty without one)."""
    shapes = results.get("shapes")
    if not shapes:
        return []
    base = shapes["baseline"]
    lines = ["", "## Replay and routing storage at real routing shapes", "",
             f"One trajectory ({shapes['trajectory']}, {shapes['tokens']:,} tokens) replayed whole (chunk "
             f"{CHUNK_SIZE}, fp32, CPU) through random-init checkpoints with each release's routing topology "
             "(untrained routers; docs/replay.md), each in a fresh process. Baselines from the same run: the "
             "bundled 4 x 16 checkpoint on the same trajectory (speed, memory), and the format-1 layout (one row "
             "per token and layer, int16 experts, float16 weights) written from the same replay (bytes). Bytes "
             "are per (token, MoE layer), all files of the replay included.", "",
             "| shape | MoE layers x experts, top-k | replay tokens/s | x bundled | peak RSS | step tier | "
             "token tier | per-step results | total (tokens) | total (steps only) | format 1 | x smaller |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = [("bundled 4 x 16 (baseline)", base), *shapes["shapes"].items()]
    for name, r in rows:
        b = r["per_token_layer"]
        lines.append(f"| {name} | {r['moe_layers']} x {r['experts']}, top-{r['top_k']} | {r['tokens_per_s']:,.0f} | "
                     f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}x | {r['peak_rss_mb']:,.0f} MB | "
                     f"{b['step_tier']:.2f} | {b['token_tier']:.2f} | {b['replay_steps']:.3f} | "
                     f"{b['total_tokens']:.2f} | {b['total_steps_only']:.2f} | {b['format1']:.2f} | "
                     f"{b['format1'] / b['total_tokens']:.1f}x |")
    return lines
