"""Replay benchmarks on one checkpoint and one long trajectory, each beside its baseline."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from horizonlens.bench.timing import interleaved, measure

if TYPE_CHECKING:
    from horizonlens.model.loader import LoadedModel


def bench_replay(loaded: "LoadedModel", trajectory_id: str, steps: list[dict[str, Any]], tokens: int = 2048,
                 chunk_size: int = 512, repeats: int = 5, prefix_steps: int = 40) -> dict[str, Any]:
    """Capture overhead, chunked vs one forward vs re-forwarding prefixes, throughput, storage."""
    import torch

    from horizonlens.model.capture import capture_routing
    from horizonlens.model.render import render
    from horizonlens.model.replay import ReplayConfig, forward_chunks, replay_trajectory
    from horizonlens.replays.cache import ReplayCache

    rendered = render(loaded.tokenizer, steps)
    n = min(tokens, len(rendered))
    ids = torch.as_tensor(rendered.token_ids[:n])[None, :]

    def plain() -> None:
        with torch.inference_mode():
            loaded.model(input_ids=ids)

    def captured() -> None:
        with capture_routing(loaded) as rec, torch.inference_mode():
            loaded.model(input_ids=ids)
            rec.take()

    def chunked() -> None:
        with capture_routing(loaded) as rec:
            forward_chunks(loaded, ids, chunk_size)
            rec.take()

    # the cost a step-by-step viewer pays without a cache: one forward of every growing prefix
    bounds = sorted({int(np.flatnonzero(rendered.steps[:n] == s)[-1]) + 1 for s in np.unique(rendered.steps[:n])})
    bounds = bounds[:: max(1, len(bounds) // prefix_steps)]

    def prefixes() -> None:
        with torch.inference_mode():
            for b in bounds:
                loaded.model(input_ids=ids[:, :b])

    timings = interleaved({"plain_forward": plain, "captured_forward": captured, "chunked_replay": chunked},
                          repeats=repeats)
    prefix = measure(prefixes, repeats=max(1, repeats // 2), warmup=0)
    full = replay_trajectory(loaded, trajectory_id, steps, ReplayConfig(chunk_size=chunk_size))
    with tempfile.TemporaryDirectory() as tmp:
        cache = ReplayCache(Path(tmp), loaded.checkpoint_id)
        cache.write([full])
        entries = cache.entries(trajectory_id)
        # both routing tiers (docs/corpus-format.md): the token tier and the per-step and per-segment tables
        by_table = {t: sum(e.bytes for e in entries.get(t, [])) for t in ("routing_tokens", "routing_steps",
                                                                            "routing_segments")}
        routing_bytes = sum(by_table.values())
    token_layers = full.n_replayed * len(full.routing)
    base = timings["plain_forward"]["median_s"]
    return {
        "tokens": n, "chunk_size": chunk_size, "moe_layers": len(loaded.routers), "experts": loaded.num_experts,
        "timings": timings, "prefix_reforward": prefix, "prefix_points": len(bounds),
        "capture_overhead_ratio": timings["captured_forward"]["median_s"] / base,
        "chunked_vs_one_forward_ratio": timings["chunked_replay"]["median_s"] / base,
        "prefix_reforward_vs_one_forward_ratio": prefix["median_s"] / base,
        "full_trajectory": {"tokens": full.n_replayed, "wall_s": full.wall_s,
                            "tokens_per_s": full.n_replayed / full.wall_s if full.wall_s else None},
        "routing_bytes_per_token_layer": routing_bytes / max(1, token_layers),
        "routing_bytes_by_table": by_table,
        "raw_fp32_logits_bytes_per_token_layer": 4 * loaded.num_experts,
    }
