"""The Rollout vs replay tab and the Trajectory page's rollout figures in Chromium, at 16 and at 256 experts.

Each case records a real bf16 token-by-token rollout of one trajectory's first tokens, imports it (which replays
the trajectory in fp32), serves the app and checks that what the page shows is what the metrics compute.
Screenshots go to test-artifacts/screenshots/rollout-*.png.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

from horizonlens.bench.browser import serving, wait_ready  # noqa: E402
from horizonlens.cli.routing_cmds import import_rollouts  # noqa: E402
from horizonlens.metrics import rollout as metrics  # noqa: E402
from horizonlens.model.loader import checkpoint_id, load_checkpoint  # noqa: E402
from horizonlens.model.replay import ReplayConfig  # noqa: E402
from horizonlens.model.rollout import record_rollout, write_sglang_jsonl  # noqa: E402
from horizonlens.model.shapes import build_shape  # noqa: E402
from horizonlens.query.store import open_store  # noqa: E402
from horizonlens.sample.bundled import sample_checkpoint  # noqa: E402
from tests.support.browser import shot  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.model]
N = 400  # tokens of the rollout: a partial rollout of the trajectory's start, as a truncated engine run would be


def _with_rollout(tiny_corpus: Path, checkpoint: Path, work: Path) -> tuple[Path, str]:
    """A corpus copy with the rollout of one trajectory (with failed checks) imported and compared."""
    import torch

    corpus = Path(shutil.copytree(tiny_corpus, work / "corpus"))
    store = open_store(corpus)
    tid = store.scalar("SELECT trajectory_id FROM trajectories WHERE n_failed_checks > 0 ORDER BY n_tokens LIMIT 1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one-token forwards: extra threads only spin
    try:
        rec = record_rollout(load_checkpoint(checkpoint, dtype="bfloat16"), tid, store.steps(tid).to_pylist(),
                             config=ReplayConfig(max_tokens=N))
    finally:
        torch.set_num_threads(threads)
    path = write_sglang_jsonl([rec], work / "rollout.jsonl")
    report = import_rollouts(store, checkpoint, [path])
    assert report.imported == [tid] and report.compared == [tid], report.problems
    return corpus, tid


def _check(browser, corpus: Path, checkpoint: Path, tid: str, name: str) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    store = open_store(corpus)
    ckpt = checkpoint_id(checkpoint)
    head = metrics.summary(store, ckpt)
    steps = metrics.step_mismatch(store, ckpt, tid)
    failed = set(store.query("SELECT step FROM steps WHERE trajectory_id = ? AND check_passed = false",
                             [tid]).column(0).to_pylist())
    # a compared step with a failed check if the rollout reached one, else the busiest compared step
    step = next((s for s in steps["step"] if s in failed), int(steps.sort_values("tokens")["step"].iloc[-1]))
    with serving(corpus, checkpoint) as app:
        url = app.url
        page = browser.new_page(viewport={"width": 1500, "height": 3200})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/routing?trajectory={tid}")
        wait_ready(page, 300_000)
        page.get_by_role("tab", name="Rollout vs replay").click()
        wait_ready(page, 300_000)
        compared = page.locator("[data-testid=stMetric]", has_text="Tokens compared")
        expect(compared).to_contain_text(f"{head['tokens_compared']:,}", timeout=120_000)
        expect(page.locator("[data-testid=stMetric]", has_text="Tokens differing in")).to_contain_text(
            f"{head['token_any_layer_mismatch']:.1%}")
        for title in ("Rollout vs replay: tokens routed differently", "Rollout vs replay along the horizon",
                      "Rollout vs replay per token and layer"):
            expect(page.locator(".gtitle", has_text=title).first).to_be_visible(timeout=60_000)
        assert page.locator("[data-testid=stException]").count() == 0
        shot(page, f"rollout-{name}-tab")
        page.goto(f"{url}/trajectory?trajectory={tid}&step={step}")
        wait_ready(page, 300_000)
        share = steps.loc[steps["step"] == step, "token_any_layer_mismatch"]
        metric = page.locator("[data-testid=stMetric]", has_text="Rollout mismatch")
        expect(metric).to_contain_text(f"{share.iloc[0]:.1%}" if len(share) else "—", timeout=120_000)
        assert page.locator("[data-testid=stException]").count() == 0
        shot(page, f"rollout-{name}-trajectory")
        assert not errors, errors
        page.close()


def test_rollout_tab_at_16_experts(browser, tiny_corpus: Path, tmp_path: Path) -> None:  # noqa: ANN001
    checkpoint = sample_checkpoint()  # the bundled 4 layers x 16 experts
    corpus, tid = _with_rollout(tiny_corpus, checkpoint, tmp_path)
    _check(browser, corpus, checkpoint, tid, "16-experts")


def test_rollout_tab_at_256_experts(browser, tiny_corpus: Path, tmp_path: Path) -> None:  # noqa: ANN001
    checkpoint = tmp_path / "agents-a1"  # Agents-A1 topology, shrunk to 8 layers, with all 256 experts top-8
    build_shape("agents-a1", checkpoint, sample_checkpoint(), layers=8, experts=256, seed=1)
    corpus, tid = _with_rollout(tiny_corpus, checkpoint, tmp_path)
    _check(browser, corpus, checkpoint, tid, "256-experts")
