"""Batch replay on a local 2-CPU Ray cluster: same results as the local engine, resumable, idempotent.

The cluster is started once for the module and always shut down in the fixture's teardown; the last
test checks that no Ray process is left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pyarrow as pa
import pytest

pytest.importorskip("torch")
ray = pytest.importorskip("ray")

from typer.testing import CliRunner  # noqa: E402

from horizonlens.cli import app  # noqa: E402
from horizonlens.errors import ReplayError  # noqa: E402
from horizonlens.model.batch import BatchDone, pack_batches, replay_many  # noqa: E402
from horizonlens.model.loader import checkpoint_id, load_checkpoint  # noqa: E402
from horizonlens.model.ray_engine import RayOptions, replay_on_ray, require_ray  # noqa: E402
from horizonlens.model.replay import ReplayConfig  # noqa: E402
from horizonlens.query.store import open_store  # noqa: E402
from horizonlens.replays.cache import ReplayCache  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.slow]
CONFIG = ReplayConfig(chunk_size=128)
TWO = RayOptions(replicas=2, cpus_per_replica=1, max_restarts=2)


@pytest.fixture(scope="module")
def ray_cluster():
    import psutil

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield
    finally:
        ray.shutdown()
    left = [p for p in psutil.Process().children(recursive=True) if "ray" in " ".join(p.cmdline()).lower()]
    assert not left, f"Ray processes left running: {[p.pid for p in left]}"


def _copy(tiny_corpus: Path, dest: Path) -> Path:
    return Path(shutil.copytree(tiny_corpus, dest))


def _ids(corpus: Path, n: int) -> list[str]:
    store = open_store(corpus)
    return store.list_trajectories(sort="n_tokens", limit=n).rows["trajectory_id"].to_pylist()


def _rows(corpus: Path, view: str) -> pa.Table:
    store = open_store(corpus)
    cols = "trajectory_id, step, token_index, layer, experts, weights, entropy, token_id, segment" \
        if view == "routing" else "*"
    order = "trajectory_id, step, token_index, layer" if view == "routing" else "trajectory_id, step"
    return store.query(f"SELECT {cols} FROM {view} ORDER BY {order}")


def _assert_each_once(corpus: Path, wanted: list[str], ckpt: str) -> None:
    cache = ReplayCache(corpus, ckpt)
    assert cache.cached_ids() == set(wanted)
    listed = [t for e in cache.snapshot().table("steps") for t in e.meta["trajectories"]]
    assert sorted(listed) == sorted(wanted), "a trajectory is listed in more than one file"
    store = open_store(corpus)
    dup = store.scalar("SELECT count(*) FROM (SELECT trajectory_id, step FROM replay_steps GROUP BY 1, 2 "
                       "HAVING count(*) > 1)")
    assert dup == 0
    n_steps = {r["trajectory_id"]: r["n_steps"] for r in
               store.query("SELECT trajectory_id, n_steps FROM trajectories").to_pylist()}
    per = {r["trajectory_id"]: r["n"] for r in
           store.query("SELECT trajectory_id, count(*) AS n FROM replay_steps GROUP BY 1").to_pylist()}
    assert per == {t: n_steps[t] for t in wanted}
    # nothing unlisted is left in the cache folder (no partial files)
    on_disk = {p.relative_to(cache.root).as_posix() for p in cache.root.rglob("*.parquet")}
    assert on_disk == {e.path for e in cache.snapshot().files}


def test_pack_batches_balances_by_tokens() -> None:
    sizes = [("long", 70_000), *((f"s{i}", 1_000) for i in range(50))]
    batches = pack_batches(sizes, 10_000)
    assert batches[0].trajectory_ids == ("long",)  # the long run starts first, alone
    assert all(b.tokens <= 10_000 for b in batches[1:])
    assert sorted(t for b in batches for t in b.trajectory_ids) == sorted(t for t, _ in sizes)
    assert len(batches) == 1 + 5


def test_ray_and_local_engines_agree(ray_cluster, tiny_corpus: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    local, remote = _copy(tiny_corpus, tmp_path / "local"), _copy(tiny_corpus, tmp_path / "ray")
    wanted = _ids(local, 6)
    budget = 2 * max(open_store(local).trajectory(t)["n_tokens"] for t in wanted)  # two or three per batch
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same thread count as each 1-CPU actor: identical float reductions
    try:
        run = replay_many(open_store(local), load_checkpoint(tiny_checkpoint), wanted, CONFIG, batch_tokens=budget)
    finally:
        torch.set_num_threads(threads)
    assert run.replayed == 6 and run.batches > 1
    seen: list[BatchDone] = []
    ray_run = replay_on_ray(open_store(remote), tiny_checkpoint, wanted, CONFIG, TWO, batch_tokens=budget,
                            on_batch=seen.append)
    assert ray_run.replayed == 6 and len(seen) == ray_run.batches > 1
    assert {d.worker for d in seen} <= set(ray_run.workers) and all(w.startswith("ray:") for w in ray_run.workers)
    for view in ("replay_steps", "routing"):
        a, b = _rows(local, view), _rows(remote, view)
        assert a.num_rows > 0 and a.equals(b), f"{view} differs between the engines"
    # both engines wrote multi-trajectory files through the same batched commit
    ckpt = checkpoint_id(tiny_checkpoint)
    for corpus in (local, remote):
        files = ReplayCache(corpus, ckpt).snapshot().table("steps")
        assert len(files) < 6 and any(len(f.meta["trajectories"]) > 1 for f in files)


def test_killed_worker_is_restarted_and_the_cache_is_complete(ray_cluster, tiny_corpus: Path, tiny_checkpoint: Path,
                                                              tmp_path: Path) -> None:
    corpus = _copy(tiny_corpus, tmp_path / "c")
    wanted = _ids(corpus, 12)
    workers: list[str] = []
    killed: list[int] = []
    done: list[BatchDone] = []

    def on_batch(batch: BatchDone) -> None:
        done.append(batch)
        if not killed:
            # the other worker is busy with its batch: kill its process outright, as the OOM killer would
            victim = int(next(w for w in workers if w != batch.worker).split(":")[1].split("@")[0])
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    run = replay_on_ray(open_store(corpus), tiny_checkpoint, wanted, CONFIG, TWO, batch_tokens=300,
                        on_start=workers.extend, on_batch=on_batch)
    assert killed and run.replayed == 12
    assert any(w not in workers for w in run.workers), "Ray did not restart the killed worker"
    _assert_each_once(corpus, wanted, checkpoint_id(tiny_checkpoint))


class Stop(Exception):
    """The driver dies mid-run."""


def test_interrupted_run_resumes_and_a_second_run_adds_nothing(ray_cluster, tiny_corpus: Path, tiny_checkpoint: Path,
                                                               tmp_path: Path) -> None:
    corpus = _copy(tiny_corpus, tmp_path / "c")
    wanted = _ids(corpus, 10)
    ckpt = checkpoint_id(tiny_checkpoint)
    count = [0]

    def die_after_two(batch: BatchDone) -> None:
        count[0] += 1
        if count[0] == 2:
            raise Stop

    with pytest.raises(Stop):
        replay_on_ray(open_store(corpus), tiny_checkpoint, wanted, CONFIG, TWO, batch_tokens=300,
                      on_batch=die_after_two)
    partial = ReplayCache(corpus, ckpt).cached_ids()
    assert 0 < len(partial) < len(wanted)
    run = replay_on_ray(open_store(corpus), tiny_checkpoint, wanted, CONFIG, TWO, batch_tokens=300)
    assert run.skipped == len(partial) and run.replayed == len(wanted) - len(partial)
    _assert_each_once(corpus, wanted, ckpt)
    again = replay_on_ray(open_store(corpus), tiny_checkpoint, wanted, CONFIG, TWO)
    assert again.replayed == 0 and again.skipped == len(wanted)
    _assert_each_once(corpus, wanted, ckpt)


def test_cli_ray_engine(ray_cluster, tiny_corpus: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    corpus = _copy(tiny_corpus, tmp_path / "c")
    args = ["replay", str(corpus), "--checkpoint", str(tiny_checkpoint), "--engine", "ray", "--replicas", "2",
            "--limit", "4", "--chunk-size", "128", "--batch-tokens", "1"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "replayed 4, already cached 0" in first.output and "2 Ray workers" in first.output
    second = CliRunner().invoke(app, args)
    assert "replayed 0, already cached 4" in second.output
    too_many = CliRunner().invoke(app, [*args, "--gpus-per-replica", "1"])
    assert too_many.exit_code == 1 and "GPU" in too_many.output


def test_missing_ray_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when the extra is not installed
    with pytest.raises(ReplayError, match=r"horizonlens\[ray\]"):
        require_ray()


# --- engine options: checked before any work ---------------------------------------------------------------
@pytest.mark.parametrize(("options", "message"), [
    (["--replicas", "-1"], "--replicas must be 1 or more, not -1"),
    (["--replicas", "0"], "--replicas must be 1 or more, not 0"),
    (["--cpus-per-replica", "0"], "--cpus-per-replica must be more than 0"),
    (["--cpus-per-replica", "nan"], "--cpus-per-replica must be more than 0"),
    (["--gpus-per-replica", "-1"], "--gpus-per-replica must be 0 or more"),
    (["--batch-tokens", "0"], "--batch-tokens must be 1 or more, not 0"),
    (["--batch-tokens", "-5"], "--batch-tokens must be 1 or more, not -5"),
    (["--address", ""], "--address must name a Ray cluster"),
])
@pytest.mark.parametrize("engine", ["ray", "local"])
def test_bad_engine_options_are_refused_before_any_work(tmp_path: Path, options: list[str], message: str,
                                                        engine: str) -> None:
    """The corpus does not even exist: the option is refused first, with its name, never an IndexError."""
    result = CliRunner().invoke(app, ["replay", str(tmp_path / "no-corpus"), "--engine", engine, *options])
    assert result.exit_code == 1, result.output
    assert message in result.output and "no-corpus" not in result.output


@pytest.mark.parametrize("kwargs", [{"replicas": 0}, {"replicas": -1}, {"cpus_per_replica": 0.0},
                                    {"gpus_per_replica": -0.5}, {"max_restarts": -1}, {"local_cpus": 0},
                                    {"address": "  "}])
def test_ray_options_check_themselves(kwargs: dict) -> None:
    with pytest.raises(ReplayError, match="must"):
        RayOptions(**kwargs)


def test_plan_refuses_a_batch_budget_below_one(tiny_corpus: Path) -> None:
    from horizonlens.model.batch import plan_replay

    with pytest.raises(ReplayError, match="--batch-tokens must be 1 or more, not 0"):
        plan_replay(open_store(tiny_corpus), "x", [], batch_tokens=0)
