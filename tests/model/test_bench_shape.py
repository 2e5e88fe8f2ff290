"""`bench --shape`: every tier measured and reported beside its same-run baselines (on a small shape)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from horizonlens.bench import shape as bench_shape  # noqa: E402
from horizonlens.model.shapes import build_shape  # noqa: E402
from horizonlens.query.store import open_store  # noqa: E402
from horizonlens.sample.bundled import bundled_dir

pytestmark = [pytest.mark.slow, pytest.mark.model]
TARGET = 500  # tokens: a short trajectory keeps the test quick; the bench uses ~9k


def _in_process(code: str) -> dict[str, Any]:
    """bench.run's child runner, without the fresh interpreter (peak RSS is not what is tested here)."""
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - code written by bench_shapes itself
    return {"peak_rss_mb": 1.0, **namespace["RESULT"]}


def test_bench_shapes_reports_every_tier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    def small(name: str, data: Path, log: Any = print) -> Path:
        out = data / "small" / name
        if not out.exists():
            build_shape(name, out, bundled_dir("checkpoint"), layers=2, experts=32)
        return out

    monkeypatch.setattr(bench_shape, "shape_checkpoint", small)
    results = bench_shape.bench_shapes(["gpt-oss-120b"], tmp_path, _in_process, log=lambda _: None, target=TARGET)
    base, oss = results["baseline"], results["shapes"]["gpt-oss-120b"]
    assert base["tokens"] == results["tokens"] and abs(results["tokens"] - TARGET) < 100
    # the same trajectory; transformers picks another tokenizer class for GPT-OSS's config (no Qwen3.5 unk
    # token), which renders some characters differently (7% of the tokens on the sample's run near the target)
    assert abs(oss["tokens"] - base["tokens"]) < 0.1 * base["tokens"]
    assert (base["moe_layers"], base["experts"], base["top_k"]) == (4, 16, 2)
    assert (oss["moe_layers"], oss["experts"], oss["top_k"]) == (2, 32, 4)
    for r in (base, oss):
        b = r["per_token_layer"]
        assert b["total_tokens"] == pytest.approx(b["step_tier"] + b["token_tier"] + b["replay_steps"]
                                                     + b["token_surprisal"])
        assert b["token_surprisal"] > 0  # the fifth table: every replay scores each token
        assert b["total_steps_only"] == pytest.approx(b["total_tokens"] - b["token_tier"])
        assert b["format1"] > b["total_tokens"] > b["total_steps_only"] > 0
        assert r["token_layers"] == r["tokens"] * r["moe_layers"]
        assert r["tokens_per_s"] == pytest.approx(r["tokens"] / r["replay_s"])
        assert r["format1_bytes"] == pytest.approx(b["format1"] * r["token_layers"])
        assert sum(r["bytes"].values()) == pytest.approx(b["total_tokens"] * r["token_layers"])
    lines = "\n".join(bench_shape.report_lines({"shapes": results}))
    assert "| gpt-oss-120b | 2 x 32, top-4 |" in lines and "| bundled 4 x 16 (baseline) | 4 x 16, top-2 |" in lines


def test_prepare_shape_corpus_is_made_once(tmp_path: Path) -> None:
    logged: list[str] = []
    made = bench_shape.prepare_shape_corpus("sample", tmp_path, target=TARGET, log=logged.append)
    store = open_store(made.corpus)
    assert store.replay_checkpoints == [made.checkpoint_id]
    assert store.query("SELECT DISTINCT trajectory_id FROM routing_steps").column(0).to_pylist() == [made.trajectory_id]
    assert store.scalar("SELECT count(*) FROM routing WHERE trajectory_id = ?", [made.trajectory_id]) == \
        made.tokens * 4  # the bundled checkpoint has 4 MoE layers
    again = bench_shape.prepare_shape_corpus("sample", tmp_path, target=TARGET, log=logged.append)
    assert again == made and sum("replayed" in m for m in logged) == 1  # reused, not replayed twice
