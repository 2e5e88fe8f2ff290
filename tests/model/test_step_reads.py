"""The step views read one step of a replay, never the whole run's token tier.

The replay is written in row groups of a few tokens, so a run spans many of them and one step only a few.
Every store query is profiled (tests/support/scans.py): the Trajectory page (step panel, its token view, Next)
may read only a fraction of the run's token-tier row groups, while a query over the whole run (the control)
reads them all; the Routing page's one-trajectory views read no token row at all.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

from horizonlens.model.batch import ensure_replayed  # noqa: E402
from horizonlens.model.loader import load_checkpoint  # noqa: E402
from horizonlens.query.store import open_store  # noqa: E402
from horizonlens.replays import codec  # noqa: E402
from horizonlens.replays.layout import TOKEN_TIER  # noqa: E402
from tests.support.app import make_app  # noqa: E402
from tests.support.scans import ScanLog  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.slow]
ROW_GROUP = 64  # rows per row group of the token and step tiers: 16 tokens at the tiny checkpoint's 4 MoE layers


@pytest.fixture(scope="module")
def paged(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: Path, tiny_checkpoint: Path):
    """The tiny corpus with its longest run replayed, the token tier in small row groups; (corpus, ckpt, run)."""
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path_factory.mktemp("paged") / "corpus"))
    store = open_store(corpus)
    tid = store.query("SELECT trajectory_id FROM trajectories ORDER BY n_tokens DESC, trajectory_id LIMIT 1"
                      ).column(0)[0].as_py()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(codec, "ROW_GROUP", ROW_GROUP)
        ensure_replayed(store, load_checkpoint(tiny_checkpoint), tid)
    return corpus, tiny_checkpoint, tid


def test_the_step_views_read_one_step_not_the_whole_token_tier(monkeypatch, paged) -> None:
    corpus, checkpoint, tid = paged
    store = open_store(corpus)
    ckpt = store.replay_checkpoints[0]
    n_steps = store.scalar("SELECT n_steps FROM trajectories WHERE trajectory_id = ?", [tid])
    log = ScanLog().install(monkeypatch)
    # the control: a query over the whole run reads every row group of its token tier (a count alone would be
    # answered from the files' statistics)
    store.query("SELECT sum(entropy) FROM routing WHERE checkpoint_id = ? AND trajectory_id = ?", [ckpt, tid])
    (whole,) = log.of(TOKEN_TIER)
    assert whole.row_groups == whole.of_row_groups >= 16
    assert whole.rows == store.scalar("SELECT count(*) FROM routing WHERE trajectory_id = ?", [tid])
    log.scans.clear()

    step = n_steps // 2
    at = make_app(monkeypatch, corpus, checkpoint, page="trajectory", trajectory=tid, step=str(step))
    at.session_state["traj_show_tokens"] = True  # the token view: the one step view that reads the token tier
    at.run()
    assert not at.exception, at.exception
    for _ in range(2):
        at.button(key="traj_next").click().run()
        assert not at.exception, at.exception
    assert any(m.value.startswith(f"### Step {step + 2} ·") for m in at.markdown)
    token_scans = log.of(TOKEN_TIER)
    assert len(token_scans) >= 3  # the token view of each step shown read its window
    for scan in token_scans:  # a step, or a window of its tokens: a few of the run's rows and row groups
        assert scan.rows * 4 < whole.rows and scan.row_groups * 4 < whole.of_row_groups, (scan, whole.rows)
    step_scans = log.of("routing_steps")  # the step tier: the step panel reads one step of it
    assert step_scans and all(s.row_groups < s.of_row_groups for s in step_scans if "step = ?" in s.sql)

    log.scans.clear()
    routing = make_app(monkeypatch, corpus, checkpoint, page="routing", trajectory=tid)
    routing.run()
    assert not routing.exception, routing.exception
    assert not log.of(TOKEN_TIER)  # the one-trajectory tab shows steps: the step tier, never token rows
