"""Shared fixtures: small generated corpora (no ../shared needed) and paths to the real datasets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from horizonlens.sample.generate import generate_corpus
from tests.support import processes
from tests.support.browser import launch_browser
from tests.support.corpora import (
    BARE_URLS,
    HOSTILE,
    HTML_LINK,
    MARKDOWN_IMAGE,
    TOOL_IMAGE,
    make_corpus,
    step_row,
    traj_row,
)


def pytest_configure(config: pytest.Config) -> None:
    # every process the session starts inherits this mark, so the check below finds it even once orphaned
    os.environ.setdefault(processes.SESSION_MARK, str(os.getpid()))


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> object:
    """Fail the session if any process it started (server, browser, Ray, S3, subprocess) is still running.

    Autouse and session-scoped, so it is set up first and torn down last, after every other fixture
    has stopped what it started. Leftovers are listed, then killed so they do not outlive the report.
    """
    before = {p.pid for p in processes.session_processes()}
    yield
    leaked = [p for p in processes.wait_until_gone() if p.pid not in before]
    if leaked:
        processes.kill(leaked)
        pytest.fail("the test session left processes running (now killed):\n" +
                    "\n".join(f"  pid {p.pid} (parent {p.ppid}): {p.cmdline[:300]}" for p in leaked), pytrace=False)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 simulated trajectories: 6 tasks (one per domain), each run by 4 agents x 2 trials."""
    out = tmp_path_factory.mktemp("corpus") / "tiny"
    generate_corpus(str(out), 48, seed=7, trials=2)
    return out


@pytest.fixture()
def hostile_corpus(tmp_path: Path) -> Path:
    """Two trajectories, one hostile: HTML/JS, SQL, LIKE wildcards, unicode, markdown images in names, bare URLs."""
    trajs = [traj_row("evil-t0", 3, task=HOSTILE, domain="weird'domain", agent=f"{MARKDOWN_IMAGE} {HTML_LINK}",
                      teacher=BARE_URLS,
                      n_failed_checks=1, outcome="failure"),
             traj_row("plain-t0", 2, domain="search")]
    steps = [
        step_row("evil-t0", 0, "user", None, message=HOSTILE),
        step_row("evil-t0", 1, reasoning=HOSTILE,
                 tool_calls=[{"id": "c1", "name": "search", "arguments": json.dumps({"q": HOSTILE})},
                             {"id": "c2", "name": TOOL_IMAGE, "arguments": BARE_URLS}],
                 observations=[{"call_id": "c1", "content": HOSTILE}]),
        step_row("evil-t0", 2, check=False, message="100% done_ok", check_detail=f"{MARKDOWN_IMAGE} {BARE_URLS}",
                 error_label=HTML_LINK),
        step_row("plain-t0", 0, "user", None, message="hello"),
        step_row("plain-t0", 1, message="plain words"),
    ]
    return make_corpus(tmp_path / "hostile", trajs, steps)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_corpus: Path):
    """A 480-token byte-level BPE trained on the tiny corpus rendered with the Horizon Lens template."""
    pytest.importorskip("torch")
    import pyarrow.parquet as pq

    from horizonlens.model.render import trajectory_text
    from horizonlens.model.tokenizer import train_tokenizer

    steps = pq.read_table(tiny_corpus / "steps").to_pylist()
    by_traj: dict[str, list] = {}
    for s in steps:
        by_traj.setdefault(s["trajectory_id"], []).append(s)
    return train_tokenizer([trajectory_text(by_traj[t]) for t in sorted(by_traj)], vocab_size=480)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer) -> Path:
    """A random tiny Qwen3.5-MoE saved with the tiny tokenizer (the app and cache tests replay with it)."""
    from tests.support.model_zoo import build

    return build("qwen3_5_moe", tmp_path_factory.mktemp("tiny_ckpt") / "qwen3_5_moe", tiny_tokenizer)


@pytest.fixture(scope="session")
def shape_corpus(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: Path, tiny_tokenizer):
    """The tiny corpus with two trajectories replayed through Agents-A1's topology shrunk to 4 layers x 32 experts.

    Returns (corpus, checkpoint, replayed trajectory ids). Routing views are tested at this shape: more
    experts than an expert axis names (24), so "other" folding and ranking are exercised.
    """
    import shutil

    from horizonlens.model.batch import ensure_replayed
    from horizonlens.model.loader import load_checkpoint
    from horizonlens.model.shapes import build_shape
    from horizonlens.query.store import open_store

    root = tmp_path_factory.mktemp("shape")
    checkpoint = root / "agents-a1-4x32"
    build_shape("agents-a1", checkpoint, tiny_tokenizer, layers=4, experts=32, seed=5)
    corpus = Path(shutil.copytree(tiny_corpus, root / "corpus"))
    store = open_store(corpus)
    ids = store.query("SELECT trajectory_id FROM trajectories WHERE n_steps >= 8 ORDER BY n_tokens, trajectory_id "
                      "LIMIT 2").column(0).to_pylist()
    loaded = load_checkpoint(checkpoint)
    for tid in ids:
        ensure_replayed(store, loaded, tid)
    return corpus, checkpoint, ids


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201 - a Playwright browser
    """Headless Chromium (Debian's package) for one test module."""
    yield from launch_browser()
