"""A corpus in S3-compatible object storage, against a real server (moto) on 127.0.0.1.

Every command runs against the S3 corpus and against the same data on local disk, and the answers must
be equal; every output is searched for the planted credentials.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from horizonlens.bench.browser import serving, wait_ready
from horizonlens.cli import app
from horizonlens.errors import CorpusError, CorpusLockedError, SqlError
from horizonlens.query import open_store, run_sql
from horizonlens.storage.dataset import Dataset
from horizonlens.storage.location import ObjectPath, as_location, redact
from tests.support.browser import shot
from tests.support.s3_server import S3Server, s3_server

pytestmark = [pytest.mark.slow]
runner = CliRunner()


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


def tau_records(n: int) -> list[dict]:
    """tau-bench-style runs: n tasks x 2 trials, some tool errors, rewards 0/1."""
    out = []
    for i in range(n):
        for trial in range(2):
            failed = (i + trial) % 3 == 0
            out.append({"task_id": i, "trial": trial, "reward": 0.0 if failed else 1.0,
                        "info": {"task": {"instruction": f"Book flight {i} for user {trial}", "user_id": f"u{i}"}},
                        "traj": [{"role": "system", "content": "policy"},
                                 {"role": "user", "content": f"please book flight number {i}"},
                                 {"role": "assistant", "content": None, "tool_calls": [
                                     {"id": "c1", "type": "function",
                                      "function": {"name": "find_flight", "arguments": json.dumps({"n": i})}}]},
                                 {"role": "tool", "tool_call_id": "c1",
                                  "content": "Error: no such flight" if failed else f"flight {i} at 10:00"},
                                 {"role": "assistant", "content": f"Flight {i} is booked." if not failed else
                                  "I could not book it."}]})
    return out


def _run(args: list[str], outputs: list[str]) -> str:
    result = runner.invoke(app, args)
    outputs.append(result.output + (str(result.exception) if result.exception else ""))
    assert result.exit_code == 0, result.output
    return result.output


def _keys(s3: S3Server, prefix: str) -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
    # (keys ending in / are the empty folder markers pyarrow leaves when it deletes a folder's last file)
    return [o["Key"] for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/")]


def test_import_query_index_metrics_replay_match_local_disk(s3: S3Server, tmp_path: Path,
                                                            tiny_checkpoint: Path) -> None:
    uri, local = s3.uri("rt/corpus"), tmp_path / "local"
    src = tmp_path / "runs.json"
    src.write_text(json.dumps(tau_records(8)))
    outputs: list[str] = []
    for where in (uri, str(local)):
        assert "16 trajectories added" in _run(["import", str(src), "--into", where], outputs)
    assert "0 trajectories added (0 replaced, 16 already present)" in _run(["import", str(src), "--into", uri],
                                                                            outputs)
    keys = _keys(s3, "rt/corpus/")
    assert "rt/corpus/manifest.json" in keys and not any(k.endswith(".lock") for k in keys)
    manifest = json.loads(s3.client().get_object(Bucket=s3.bucket, Key="rt/corpus/manifest.json")["Body"].read())
    corpus_files = [k for k in keys if k.endswith(".parquet") and k.split("/")[2] in ("trajectories", "steps")]
    assert sorted(f"rt/corpus/{f['path']}" for f in manifest["files"]) == sorted(corpus_files)
    assert any(k.startswith("rt/corpus/aggregates/") for k in keys)  # imports keep the aggregates, in S3 too
    assert open_store(uri).has_aggregates
    remote_store, local_store = open_store(uri), open_store(local)
    order = "SELECT * EXCLUDE (metadata) FROM trajectories ORDER BY trajectory_id"
    assert remote_store.query(order).equals(local_store.query(order))
    tid = remote_store.list_trajectories(sort="trajectory_id", limit=1).rows["trajectory_id"][0].as_py()
    assert remote_store.steps(tid).equals(local_store.steps(tid))

    sql = "SELECT count(*) AS n, sum(n_tokens) AS t FROM steps"
    assert _run(["sql", uri, sql, "--json"], outputs) == _run(["sql", str(local), sql, "--json"], outputs)
    assert _run(["metrics", uri, "--json"], outputs) == _run(["metrics", str(local), "--json"], outputs)
    for where in (uri, str(local)):
        _run(["index", where], outputs)
    from horizonlens.query import TrajectoryFilter

    words = TrajectoryFilter(text="flight booked", text_mode="words")
    remote_store, local_store = open_store(uri), open_store(local)
    assert remote_store.has_word_index
    assert remote_store.list_trajectories(words).rows.equals(local_store.list_trajectories(words).rows)

    replay = ["--checkpoint", str(tiny_checkpoint), "--limit", "6", "--chunk-size", "128", "--batch-tokens", "60"]
    for where in (uri, str(local)):
        assert "replayed 6, already cached 0" in _run(["replay", where, *replay], outputs)
    assert "replayed 0, already cached 6" in _run(["replay", uri, *replay], outputs)
    remote_store, local_store = open_store(uri), open_store(local)
    for view, order in (("replay_steps", "trajectory_id, step"), ("routing", "trajectory_id, token_index, layer")):
        q = f"SELECT * EXCLUDE (checkpoint_id) FROM {view} ORDER BY {order}"
        a, b = remote_store.query(q), local_store.query(q)
        assert a.num_rows > 0 and a.equals(b), view
    cache_keys = [k for k in _keys(s3, "rt/corpus/replays/") if k.endswith(".parquet")]
    assert 4 <= len(cache_keys) < 4 * 6  # batches of several trajectories: fewer files than 4 tables per trajectory
    assert not [o for o in outputs if s3.leaks(o)], "a credential appeared in a command's output"


def test_labels_and_rollout_routing_on_s3_match_local_disk(s3: S3Server, tmp_path: Path,
                                                           tiny_checkpoint: Path) -> None:
    """`annotate` (import, export, score) and `routing` (import, compare) take an s3:// corpus, as the README says."""
    from horizonlens.model.loader import load_checkpoint
    from horizonlens.model.replay import ReplayConfig
    from horizonlens.model.rollout import record_rollout, write_vllm_jsonl

    uri, local = s3.uri("labels/corpus"), tmp_path / "local"
    src = tmp_path / "runs.json"
    src.write_text(json.dumps(tau_records(3)))
    truth = tmp_path / "agentrx.json"
    truth.write_text(json.dumps([{"trajectory_id": "1", "trial": 0, "root_cause": {"failure_id": "a"},
                                  "failures": [{"failure_id": "a", "step_number": 3, "failure_category": "=cmd()"}]}]))
    loaded = load_checkpoint(tiny_checkpoint, dtype="bfloat16")
    tid = "tau-bench:1:0"
    outputs: list[str] = []
    for where in (uri, str(local)):
        _run(["import", str(src), "--into", where], outputs)
        steps = open_store(where).steps(tid).to_pylist()
        rollout = write_vllm_jsonl([record_rollout(loaded, tid, steps, config=ReplayConfig(max_tokens=48))],
                                   tmp_path / "rollout.jsonl")
        assert "2 labels added on 1 trajectories" in _run(["annotate", "import", str(truth), "--into", where,
                                                           "--format", "agentrx"], outputs)
        _run(["annotate", "export", where, "--out", str(tmp_path / f"{len(outputs)}.csv")], outputs)
        _run(["annotate", "score", where, "--truth", "failure@agentrx", "--json"], outputs)
        assert "1 of 1 rollout records imported, 1 compared" in _run(
            ["routing", "import", str(rollout), "--into", where, "--checkpoint", str(tiny_checkpoint)], outputs)
        assert "compared 1 trajectories" in _run(["routing", "compare", where, "--checkpoint", str(tiny_checkpoint)],
                                                 outputs)
    remote_store, local_store = open_store(uri), open_store(local)
    for view in ("annotations", "routing_rollout"):
        q = f"SELECT * EXCLUDE (annotation_id, created_at) FROM {view} ORDER BY ALL" if view == "annotations" else \
            f"SELECT * EXCLUDE (checkpoint_id) FROM {view} ORDER BY ALL"
        a, b = remote_store.query(q), local_store.query(q)
        assert a.num_rows > 0 and a.equals(b), view
    exported = sorted(tmp_path.glob("*.csv"))
    assert len(exported) == 2 and all("'=cmd()" in f.read_text() for f in exported)  # safe to open, both places
    assert not [o for o in outputs if s3.leaks(o)], "a credential appeared in a command's output"


def test_the_sql_console_stays_locked_on_s3(s3: S3Server, tmp_path: Path) -> None:
    uri = s3.uri("locked/corpus")
    src = tmp_path / "runs.json"
    src.write_text(json.dumps(tau_records(2)))
    _run(["import", str(src), "--into", uri], [])
    store = open_store(uri)
    assert run_sql(store, "SELECT count(*) AS n FROM trajectories").table["n"][0].as_py() == 4
    for bad in ("SELECT * FROM read_parquet('/etc/passwd')", f"SELECT * FROM read_parquet('{uri}/steps/*.parquet')",
                "SELECT * FROM read_csv('/etc/passwd')"):
        with pytest.raises(SqlError) as err:
            run_sql(store, bad)
        assert not s3.leaks(str(err.value))
    with pytest.raises(SqlError, match="only SELECT"):
        run_sql(store, "COPY trajectories TO '/tmp/leak.csv'")
    with pytest.raises(SqlError):
        run_sql(store, "SET enable_external_access = true")


def test_the_writer_lock_on_s3(s3: S3Server) -> None:
    uri = s3.uri("lock/ds")
    ds = Dataset(uri, ["rows"])
    with ds.transaction(create={"kind": "test"}) as txn:
        txn.write("rows", pa.table({"x": [1]}))
        txn.commit()
    lock_key = "lock/ds/.lock"
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with ds.transaction():
            taken.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(30)
        with pytest.raises(CorpusLockedError, match="another writer holds the lock"):
            with Dataset(uri, ["rows"], lock_timeout_s=1).transaction():
                pass
    finally:
        release.set()
        holder.join()
    assert lock_key not in _keys(s3, "lock/ds/")  # released
    # a writer that died: its lock object stays, with a lease that has run out; the next writer breaks it
    s3.client().put_object(Bucket=s3.bucket, Key=lock_key, Body=json.dumps({"pid": 1, "lease_s": 0.5}).encode())
    # ... and it left an upload nobody listed
    ds.root.__truediv__("rows/hl-0123456789ab-00000.parquet").write_bytes(b"PAR1 half a file")
    time.sleep(1.6)  # Last-Modified has one-second resolution
    with ds.transaction(timeout_s=10) as txn:
        assert "lock/ds/rows/hl-0123456789ab-00000.parquet" not in _keys(s3, "lock/ds/")
        txn.write("rows", pa.table({"x": [2]}))
        assert ds.object_lock is not None
        ds.object_lock.lost = True  # the lease lapsed (say, the process was suspended): nothing is published
        with pytest.raises(CorpusLockedError, match="lapsed"):
            txn.commit()
    assert ds.snapshot().version == 1 and [f.rows for f in ds.snapshot().table("rows")] == [1]
    assert [k for k in _keys(s3, "lock/ds/rows/")] == [f"lock/ds/{f.path}" for f in ds.snapshot().files]


def test_locations_and_redaction(s3: S3Server) -> None:
    with pytest.raises(CorpusError) as err:
        as_location(f"s3://{s3.key_id}:{s3.secret}@{s3.bucket}/x")
    assert not s3.leaks(str(err.value)) and "environment" in str(err.value)
    with pytest.raises(CorpusError, match="parsed as a local path"):
        as_location(Path("s3://bucket/prefix"))
    loc = as_location(f"s3://{s3.bucket}/a/b/")
    assert isinstance(loc, ObjectPath) and str(loc) == f"s3://{s3.bucket}/a/b" and (loc / "c").name == "c"
    assert redact(f"denied for {s3.key_id} with {s3.secret}") == "denied for *** with ***"
    for missing in (s3.uri("no/such/corpus"), "s3://no-such-bucket-here/x"):
        with pytest.raises(CorpusError) as err:
            open_store(missing)
        assert "manifest.json" in str(err.value) or "storage" in str(err.value)
        assert not s3.leaks(str(err.value))
    result = runner.invoke(app, ["sql", "s3://no-such-bucket-here/x", "SELECT 1"])
    assert result.exit_code == 1 and not s3.leaks(result.output)


def test_compact_and_migrate_work_on_s3(s3: S3Server, tmp_path: Path, tiny_checkpoint: Path) -> None:
    uri = s3.uri("compact/corpus")
    src = tmp_path / "runs.json"
    src.write_text(json.dumps(tau_records(2)))
    outputs: list[str] = []
    _run(["import", str(src), "--into", uri], outputs)
    replay = ["replay", uri, "--checkpoint", str(tiny_checkpoint), "--limit", "3", "--chunk-size", "128",
              "--batch-tokens", "1"]
    assert "replayed 3" in _run(replay, outputs)  # batches of one: a file per table per trajectory
    view = "SELECT * FROM routing ORDER BY trajectory_id, token_index, layer"
    before = open_store(uri).query(view)
    cache = [k for k in _keys(s3, "compact/corpus/replays/") if k.endswith(".parquet")]
    assert len(cache) == 3 * 5  # steps, two step-tier tables, token routing, token surprisal
    out = _run(["compact", uri], outputs)
    assert "15 files" in out and "-> 5 files" in out
    assert len([k for k in _keys(s3, "compact/corpus/replays/") if k.endswith(".parquet")]) == 5
    assert open_store(uri).query(view).equals(before)
    assert "already cached 3" in _run(replay, outputs)
    assert "nothing to do" in _run(["migrate", uri], outputs)
    assert not [o for o in outputs if s3.leaks(o)]


SPELLED_IMPORT = textwrap.dedent("""
    import sys
    from horizonlens.errors import HorizonLensError
    from horizonlens.ingest import import_paths
    try:
        report = import_paths([sys.argv[2]], sys.argv[1], batch_size=20)
    except HorizonLensError as exc:
        print("refused:", exc)
        sys.exit(3)
    print("added", report.added)
""")


def test_two_spellings_of_one_corpus_take_one_lock(s3: S3Server, tmp_path: Path) -> None:
    """Concurrent imports through two spellings of one S3 corpus: every import that reports success is kept.

    pyarrow resolves `.` and `..` in object keys while the lock object is named by the raw key, so a spelling
    with them wrote the same corpus under a lock of its own, and the two imports overwrote each other's manifest.
    """
    halves = []
    for n in range(2):  # 115 tasks x 2 trials each, no overlap: 460 runs in all
        path = tmp_path / f"half{n}.json"
        path.write_text(json.dumps([dict(r, task_id=r["task_id"] + 115 * n) for r in tau_records(115)]))
        halves.append(path)
    script = tmp_path / "spelled.py"
    script.write_text(SPELLED_IMPORT)
    spellings = [s3.uri("dual/corpus"), s3.uri("dual/x/../corpus")]
    procs = [subprocess.Popen([sys.executable, str(script), where, str(src)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for where, src in zip(spellings, halves, strict=True)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode in (0, 3) for p in procs), [o[1][-1500:] for o in outs]
    reported = sum(int(o[0].split()[-1]) for p, o in zip(procs, outs, strict=True) if p.returncode == 0)
    kept = open_store(spellings[0]).scalar("SELECT count(*) FROM trajectories")
    assert kept == reported == 230, (kept, reported)  # the refused spelling wrote nothing
    assert procs[0].returncode == 0 and procs[1].returncode == 3 and "normalised" in outs[1][0]
    assert not s3.leaks(outs[1][0])
    assert not [k for k in _keys(s3, "dual/") if "/x/" in k]  # no lock or data under the other spelling
    # spellings that name the same objects are one location, with one lock; others are refused
    same = [as_location(s3.uri(p)) for p in ("dual/corpus", "dual/corpus/")]
    assert same[0] == same[1] and (same[0] / ".lock").key == (same[1] / ".lock").key
    for bad in ("dual/./corpus", "dual//corpus", "../other-bucket/corpus", "dual/corpus/..", "a/\x00/b"):
        with pytest.raises(CorpusError, match="normalised"):
            as_location(s3.uri(bad))
    with pytest.raises(CorpusError, match="leaves the corpus"):
        same[0] / "../../other"


@pytest.mark.browser
def test_explore_and_trajectory_pages_over_s3(s3: S3Server, browser, tmp_path: Path,  # noqa: ANN001, F811
                                             tiny_checkpoint: Path) -> None:
    uri = s3.uri("app/corpus")
    src = tmp_path / "runs.json"
    src.write_text(json.dumps(tau_records(8)))
    _run(["import", str(src), "--into", uri], [])
    _run(["replay", uri, "--checkpoint", str(tiny_checkpoint), "-t", "tau-bench:7:0", "--chunk-size", "128"], [])
    texts = []
    with serving(uri, tiny_checkpoint) as app:  # type: ignore[arg-type]
        url = app.url
        page = browser.new_page(viewport={"width": 1440, "height": 1400})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        wait_ready(page)
        assert page.get_by_text("16", exact=True).first.is_visible()  # trajectories in the S3 corpus
        shot(page, "s3-01-explore")
        texts.append(page.locator("body").inner_text())
        page.goto(f"{url}/trajectory?trajectory=tau-bench:7:0&step=2")
        page.get_by_role("heading", name="Trajectory").wait_for(timeout=60_000)
        wait_ready(page)
        page.get_by_text("Experts chosen in step", exact=False).first.wait_for(timeout=60_000)  # the S3 cache
        assert page.get_by_text("find_flight", exact=False).first.is_visible()
        shot(page, "s3-02-trajectory")
        texts.append(page.locator("body").inner_text() + page.content())
        assert not errors, errors
        page.close()
    assert not [t for t in texts if s3.leaks(t)], "a credential appeared in the app"
