"""The token count shown before a replay is the count the replay then runs (the checkpoint's tokenizer)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from horizonlens.model.loader import checkpoint_id
from horizonlens.replays import ReplayCache
from tests.support.app import make_app

pytestmark = pytest.mark.model


def test_pre_replay_count_equals_the_replayed_count(monkeypatch, tiny_corpus: Path, tiny_checkpoint: Path,
                                                    tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    run = max(pq.read_table(corpus / "trajectories").to_pylist(), key=lambda t: t["n_tokens"])
    at = make_app(monkeypatch, corpus, tiny_checkpoint, page="trajectory", trajectory=run["trajectory_id"])
    at.run()
    assert not at.exception, at.exception
    offer = next(i.value for i in at.info if "has not been replayed" in i.value)
    shown = int(re.search(r"\(([\d,]+) tokens as this checkpoint's tokenizer renders it\)", offer).group(1)
                .replace(",", ""))
    assert shown != run["n_tokens"]  # the corpus's estimate is not what is shown
    at.button(key=f"replay_{run['trajectory_id']}").click().run(timeout=300)
    assert not at.exception, at.exception
    notes = ReplayCache(corpus, checkpoint_id(tiny_checkpoint)).read_notes(run["trajectory_id"])
    assert int(notes["n_replayed"]) == shown
