"""Datasets publish atomically and read only valid manifests: crashes, concurrent writers, locks, hostile manifests."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from horizonlens.corpus.files import corpus_dataset
from horizonlens.errors import CorpusError, CorpusLockedError
from horizonlens.query import open_store
from horizonlens.storage.dataset import OWN_FILE, Dataset
from tests.support.corpora import SAMPLE_CORPUS, make_corpus, step_row, traj_row


def _corpus(root: Path) -> Path:
    trajs = [traj_row(f"t{i}-t0", 2) for i in range(4)]
    steps = [step_row(f"t{i}-t0", s) for i in range(4) for s in range(2)]
    return make_corpus(root, trajs, steps)


def _consistent(root: Path) -> tuple[int, dict[str, int]]:
    """(trajectory rows, steps per trajectory) as the store shows them; asserts no duplicates or orphans."""
    store = open_store(root)
    ids = store.query("SELECT trajectory_id, n_steps FROM trajectories").to_pylist()
    assert len(ids) == len({r["trajectory_id"] for r in ids}), "duplicate trajectory rows"
    steps = {r["trajectory_id"]: r["n"] for r in store.query(
        "SELECT trajectory_id, count(*) AS n, count(DISTINCT step) AS d FROM steps GROUP BY 1").to_pylist()}
    dup = store.query("SELECT count(*) FROM (SELECT trajectory_id, step FROM steps GROUP BY 1, 2 HAVING count(*) > 1)")
    assert dup.column(0)[0].as_py() == 0, "doubled steps"
    for r in ids:
        assert steps.get(r["trajectory_id"]) == r["n_steps"], f"{r['trajectory_id']} lost its steps"
    assert set(steps) <= {r["trajectory_id"] for r in ids}, "steps without a trajectory"
    store.close()
    return len(ids), steps


def _unlisted_own_files(root: Path) -> list[str]:
    """Files a corpus writer made that its manifest does not list (derived datasets keep manifests of their own)."""
    snap = corpus_dataset(root).snapshot()
    listed = {f.path for f in snap.files}
    derived = {"replays", "index", "aggregates", "annotations"}
    return [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and OWN_FILE.match(p.name)
            and p.relative_to(root).as_posix() not in listed and not derived & set(p.relative_to(root).parts)]


def test_commit_is_invisible_until_the_switch_and_abort_leaves_nothing(tmp_path: Path) -> None:
    ds = Dataset(tmp_path / "d", ["rows"])
    with ds.transaction(create={"kind": "test"}) as txn:
        txn.write("rows", pa.table({"x": [1, 2]}))
        txn.commit()
    before = ds.snapshot()
    assert before.version == 1 and [f.rows for f in before.table("rows")] == [2]
    with ds.transaction() as txn:
        written = txn.write("rows", pa.table({"x": [3]}))
        assert ds.snapshot().files == before.files  # readers still see the old state
        assert (ds.root / written.path).exists()
        # no commit: leaving the block aborts
    assert ds.snapshot().files == before.files
    assert not (ds.root / written.path).exists()
    with ds.transaction() as txn:
        txn.remove(before.table("rows"))
        txn.write("rows", pa.table({"x": [7, 8, 9]}))
        after = txn.commit()
    assert after.version == 2 and sum(f.rows for f in after.table("rows")) == 3
    assert not (ds.root / before.table("rows")[0].path).exists()  # removed files are deleted after the switch
    entry = after.table("rows")[0]
    assert entry.sha256 and entry.bytes == (ds.root / entry.path).stat().st_size


def test_manifest_paths_cannot_leave_the_dataset(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "c")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"][0]["path"] = "../../etc/passwd"
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorpusError, match="leaves the dataset folder"):
        open_store(root)


CRASH = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from horizonlens.storage import atomic
    from horizonlens.ingest import import_paths

    point = sys.argv[3]
    real_write_json, real_replace = atomic.write_json_atomic, os.replace

    def die(*a, **k):
        os._exit(9)

    if point == "before-manifest":
        atomic.write_json_atomic = die
    elif point == "manifest-written-not-renamed":
        def replace(src, dst):
            if str(dst).endswith("manifest.json"):
                os._exit(9)
            return real_replace(src, dst)
        atomic.os.replace = replace
    elif point == "after-switch":
        def write_then_die(data, path):
            real_write_json(data, path)
            if path.name == "manifest.json" and "files" in data:
                os._exit(9)
        atomic.write_json_atomic = write_then_die
    elif point == "mid-flush":
        real_write = atomic.write_parquet
        calls = []
        def write(table, path, options=None):
            calls.append(path)
            if len(calls) == 3:
                with open(path, "wb") as fh:  # half a file, as by a kill during the write
                    fh.write(b"PAR1" + b"x" * 100)
                os._exit(9)
            return real_write(table, path, options)
        atomic.write_parquet = write
    import_paths([Path(sys.argv[1])], Path(sys.argv[2]), replace=True, batch_size=1)
""")


def _chat_records(ids: list[str], marker: str) -> list[dict]:
    return [{"id": i, "messages": [{"role": "user", "content": f"{marker} question {i}"},
                                   {"role": "assistant", "content": f"{marker} answer"}]} for i in ids]


@pytest.mark.parametrize("point", ["before-manifest", "manifest-written-not-renamed", "after-switch", "mid-flush"])
def test_a_crash_at_any_point_of_an_import_leaves_before_or_after(tmp_path: Path, point: str) -> None:
    from horizonlens.ingest import import_paths

    root = tmp_path / "c"
    first = tmp_path / "first.jsonl"
    first.write_text("\n".join(json.dumps(r) for r in _chat_records(["a", "b", "c"], "v1")))
    import_paths([first], root)
    before = _consistent(root)
    second = tmp_path / "second.jsonl"  # replaces b and c, adds d and e
    second.write_text("\n".join(json.dumps(r) for r in _chat_records(["b", "c", "d", "e"], "v2")))
    script = tmp_path / "crash.py"
    script.write_text(CRASH)
    out = subprocess.run([sys.executable, str(script), str(second), str(root), point], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 9, out.stderr[-2000:]
    state = _consistent(root)
    after_state = (5, {"chat:a": 2, "chat:b": 2, "chat:c": 2, "chat:d": 2, "chat:e": 2})
    assert state in (before, after_state), state
    # the next import runs to the end, and nothing a crashed writer left stays behind
    import_paths([second], root, replace=True)
    assert _consistent(root) == after_state
    assert _unlisted_own_files(root) == []
    store = open_store(root)
    texts = store.query("SELECT message FROM steps WHERE trajectory_id = 'chat:b' AND step = 0").column(0).to_pylist()
    assert texts == ["v2 question b"]


IMPORTER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from horizonlens.ingest import import_paths
    report = import_paths([Path(p) for p in sys.argv[2:]], Path(sys.argv[1]), batch_size=50)
    print(report.added, report.skipped_existing)
""")


def test_two_imports_into_one_corpus_at_once_lose_and_double_nothing(tmp_path: Path) -> None:
    root = tmp_path / "c"
    files = []
    for n in range(2):  # overlapping ids: 0..299 and 150..449
        path = tmp_path / f"in{n}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in _chat_records([f"r{i}" for i in range(150 * n, 150 * n + 300)],
                                                                       "x")))
        files.append(path)
    script = tmp_path / "imp.py"
    script.write_text(IMPORTER)
    # both create the same new corpus at the same moment
    procs = [subprocess.Popen([sys.executable, str(script), str(root), str(f)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for f in files]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outs]
    added = [tuple(map(int, o[0].split())) for o in outs]
    assert sum(a for a, _ in added) == 450 and sorted(s for _, s in added) == [0, 150]
    n, steps = _consistent(root)
    assert n == 450 and all(v == 2 for v in steps.values())


def test_a_held_lock_times_out_with_a_clear_error(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "c")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from horizonlens.corpus.files import corpus_dataset
        with corpus_dataset({str(root)!r}).transaction() as txn:
            print("locked", flush=True)
            sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(CorpusLockedError, match=r"another writer holds the lock \(pid \d+"):
            with corpus_dataset(root).transaction(timeout_s=0.3):
                pass
    finally:
        holder.communicate("\n", timeout=60)
    with corpus_dataset(root).transaction(timeout_s=5) as txn:  # released once the holder is done
        assert txn.snapshot.version == 1


def test_a_killed_writer_releases_its_lock(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "c")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from horizonlens.corpus.files import corpus_dataset
        with corpus_dataset({str(root)!r}).transaction() as txn:
            print("locked", flush=True)
            time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait(timeout=60)
    with corpus_dataset(root).transaction(timeout_s=10):
        pass


def test_manifest_keeps_ordinary_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        root = _corpus(tmp_path / "c")
        with corpus_dataset(root).transaction() as txn:
            txn.update(note="x")
            txn.commit()
    finally:
        os.umask(old)
    mode = stat.S_IMODE((root / "manifest.json").stat().st_mode)
    assert mode == 0o644, oct(mode)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_corpus_gives_a_clear_error(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "c")
    (root / ".lock").unlink(missing_ok=True)
    root.chmod(0o555)
    try:
        with pytest.raises(CorpusError, match="read-only"):
            with corpus_dataset(root).transaction():
                pass
    finally:
        root.chmod(0o755)


def test_a_hand_written_corpus_is_refused_until_migrate_records_its_files(tmp_path: Path) -> None:
    """A manifest without a file list (by hand, or an older Horizon Lens) names the upgrade; `migrate` lists it."""
    from horizonlens.replays.migrate import migrate

    root = _corpus(tmp_path / "c")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest.pop("files")
    (root / "manifest.json").write_text(json.dumps(manifest))
    extra = root / "steps" / "by-hand.parquet"  # a file a user dropped in: found by listing
    pq.write_table(pq.read_table(next(p for p in (root / "steps").glob("hl-*.parquet"))).slice(0, 0), extra)
    for reader in (lambda: corpus_dataset(root).snapshot(), lambda: open_store(root)):
        with pytest.raises(CorpusError, match=r"no file list.*`horizonlens migrate CORPUS`"):
            reader()
    with pytest.raises(CorpusError, match="horizonlens migrate"):  # nor is it written to as it is
        with corpus_dataset(root).transaction():
            pass
    assert migrate(root).corpus_listed
    snap = corpus_dataset(root).snapshot()
    assert "steps/by-hand.parquet" in [f.path for f in snap.files]
    assert all(f.rows >= 0 and f.sha256 for f in snap.files) and snap.version == manifest.get("version", 0) + 1
    assert _consistent(root)[0] == 4
    assert not migrate(root).corpus_listed  # current: nothing to do


def test_a_file_written_then_removed_in_one_transaction_is_not_published(tmp_path: Path) -> None:
    """A writer that rewrites its own new file (batch by batch) publishes only the last version."""
    dataset = Dataset(tmp_path / "d", ["t"])
    rows = pa.table({"x": [1, 2, 3]})
    with dataset.transaction(create={"kind": "test"}) as txn:
        first = txn.write("t", rows)
        txn.remove([first])
        second = txn.write("t", rows.slice(1))
        snap = txn.commit()
    assert [f.path for f in snap.files] == [second.path]
    assert not (dataset.root / first.path).exists() and (dataset.root / second.path).exists()
    assert pq.read_table(dataset.root / second.path).num_rows == 2


# --- hostile manifests: one validator, parts left out, derived data rebuilt ---------------------------------------
def _sample(tmp_path: Path) -> Path:
    """A copy of the bundled corpus: its replay cache (top-2 of 16 experts) and aggregates included."""
    import shutil


    return Path(shutil.copytree(SAMPLE_CORPUS, tmp_path / "sample"))


def _edit(manifest_path: Path, change) -> dict:  # noqa: ANN001
    manifest = json.loads(manifest_path.read_text())
    change(manifest)
    manifest_path.write_text(json.dumps(manifest))
    return manifest


def _replay_manifest(root: Path) -> Path:
    return next((root / "replays").glob("*/manifest.json"))


def test_a_file_listed_twice_is_refused_not_counted_twice(tmp_path: Path) -> None:
    root = _sample(tmp_path)
    steps = open_store(root).scalar("SELECT count(*) FROM steps")
    corpus = _edit(root / "manifest.json", lambda m: m["files"].append(dict(m["files"][-1])))
    with pytest.raises(CorpusError, match="listed twice"):
        open_store(root)
    corpus["files"].pop()
    (root / "manifest.json").write_text(json.dumps(corpus))
    # in a part: the part is left out and reported, the corpus opens, and compact writes nothing out
    cache = _replay_manifest(root)
    _edit(cache, lambda m: m["files"].append(dict(next(f for f in m["files"] if f["table"] == "steps"))))
    before = cache.read_text()
    store = open_store(root)
    assert store.scalar("SELECT count(*) FROM steps") == steps
    assert store.scalar("SELECT count(*) FROM replay_steps") == 0
    assert any("listed twice" in p for p in store.problems), store.problems
    from typer.testing import CliRunner

    from horizonlens.cli import app

    result = CliRunner().invoke(app, ["compact", str(root)])
    assert result.exit_code == 1 and "listed twice" in result.output
    assert cache.read_text() == before


@pytest.mark.parametrize("change,message", [
    (lambda f: f.update(rows="12"), "'rows' is '12'"),
    (lambda f: f.update(rows=True), "'rows' is True"),
    (lambda f: f.update(bytes=-1), "'bytes' is -1"),
    (lambda f: f.update(bytes=1.5), "'bytes' is 1.5"),
    (lambda f: f.update(path="/etc/passwd"), "absolute"),
    (lambda f: f.update(path="steps/../../x.parquet"), "leaves the dataset folder"),
    (lambda f: f.update(path="steps/./part-00000.parquet"), "not normalised"),
    (lambda f: f.update(path="steps//part-00000.parquet"), "not normalised"),
    (lambda f: f.update(path="steps/a\x00.parquet"), "NUL"),
    (lambda f: f.update(path="steps\\part-00000.parquet"), "backslash"),
    (lambda f: f.update(path="trajectories/part-00000.parquet"), "not inside the folder of its table"),
    (lambda f: f.update(table="secrets"), "names table 'secrets'"),
    (lambda f: f.update(sha256="zz"), "sha256"),
    (lambda f: f.update(meta=[1]), "'meta' that is not an object"),
])
def test_hostile_corpus_manifest_entries_are_refused_with_a_message(tmp_path: Path, change, message: str) -> None:  # noqa: ANN001
    root = _sample(tmp_path)
    _edit(root / "manifest.json", lambda m: change(next(f for f in m["files"] if f["table"] == "steps")))
    with pytest.raises(CorpusError, match=message):
        open_store(root)


@pytest.mark.parametrize("change,message", [
    (lambda m: m.update(schema_version=2), "schema_version 2; this Horizon Lens reads 1"),
    (lambda m: m.update(schema_version="1"), "schema_version '1'"),
    (lambda m: m.update(version="3"), "'version' is '3'"),
    (lambda m: m.update(files={"a": 1}), "'files' is not a list"),
])
def test_hostile_corpus_manifest_keys_are_refused_with_a_message(tmp_path: Path, change, message: str) -> None:  # noqa: ANN001
    root = _sample(tmp_path)
    _edit(root / "manifest.json", change)
    with pytest.raises(CorpusError, match=message):
        open_store(root)


def _token_entry(m: dict) -> dict:
    return next(f for f in m["files"] if f["table"] == "routing_tokens")


@pytest.mark.parametrize("change,message", [
    (lambda m: _token_entry(m)["meta"].update(top_k=1000), "top_k.* is 1000, not a whole number from 1 to 16"),
    (lambda m: _token_entry(m)["meta"].update(top_k=17), "top_k.* is 17, not a whole number from 1 to 16"),
    (lambda m: (m.pop("checkpoint"), _token_entry(m)["meta"].update(top_k=65)), "top_k.* is 65, .* from 1 to 64"),
    (lambda m: _token_entry(m)["meta"].update(top_k="2"), "top_k.*'2'"),
    (lambda m: _token_entry(m)["meta"].update(top_k=0), "top_k.*0"),
    (lambda m: _token_entry(m)["meta"].update(trajectories="all"), "meta.trajectories"),
    (lambda m: _token_entry(m)["meta"].update(notes=[]), "meta.notes"),
    (lambda m: m.update(routing_format=3), "routing_format 3"),
    (lambda m: _token_entry(m).update(rows="many"), "'rows' is 'many'"),
])
def test_a_hostile_replay_manifest_leaves_the_cache_out_and_the_corpus_opens(tmp_path: Path, change,  # noqa: ANN001
                                                                               message: str) -> None:
    root = _sample(tmp_path)
    _edit(_replay_manifest(root), change)
    store = open_store(root)
    assert store.scalar("SELECT count(*) FROM trajectories") == 2400
    assert store.scalar("SELECT count(*) FROM routing") == 0 and store.replay_checkpoints == []
    assert any(re.search(message, p) for p in store.problems), store.problems
    # the views still exist, with their columns, and the metrics read them as "nothing replayed"
    from horizonlens.metrics import replays, routing

    ckpt = _replay_manifest(root).parent.name
    assert replays.replayed_trajectories(store, ckpt) == [] and routing.expert_load(store, ckpt).empty


@pytest.mark.parametrize("damage", ["truncate", "manifest", "bytes"])
def test_damaged_derived_data_falls_back_to_the_corpus_and_names_the_rebuild(tmp_path: Path, damage: str) -> None:
    root = _sample(tmp_path)
    q = "SELECT * FROM agg_cube_trajectories ORDER BY ALL"
    fresh = open_store(root)
    assert fresh.has_aggregates
    want, summary = fresh.query(q), fresh.by_group("domain")
    agg = root / "aggregates"
    if damage == "truncate":
        victim = next(agg.glob("cube_trajectories/*.parquet"))
        victim.write_bytes(victim.read_bytes()[:100])
    elif damage == "manifest":
        (agg / "manifest.json").write_text('{"files": [{"table": "agg_trajectories"')
    else:
        _edit(agg / "manifest.json", lambda m: m["files"][0].update(bytes="huge"))
    store = open_store(root)
    assert not store.has_aggregates
    assert any("horizonlens index CORPUS" in p for p in store.problems), store.problems
    assert store.query(q).equals(want)  # computed from the corpus by the same SQL
    assert store.by_group("domain").equals(summary)
    from typer.testing import CliRunner

    from horizonlens.cli import app

    rebuilt = CliRunner().invoke(app, ["index", str(root)])
    assert rebuilt.exit_code == 0, rebuilt.output
    again = open_store(root)
    assert again.has_aggregates and not again.problems and again.query(q).equals(want)


def test_a_bad_labels_manifest_leaves_the_labels_out_and_the_corpus_opens(tmp_path: Path) -> None:
    from horizonlens.labels.annotations import Label, add_labels

    root = _sample(tmp_path)
    add_labels(root, [Label("search-00000-a1-student-ckpt-4k-t0", "wrong tool", step=1)])
    assert open_store(root).scalar("SELECT count(*) FROM annotations") == 1
    _edit(root / "annotations" / "manifest.json", lambda m: m["files"][0].update(path="../manifest.json"))
    store = open_store(root)
    assert store.scalar("SELECT count(*) FROM annotations") == 0
    assert store.label_problems and "leaves the dataset folder" in store.label_problems[0]


def test_every_view_exists_with_the_same_columns_when_its_dataset_is_empty(tmp_path: Path) -> None:
    import shutil

    root = _sample(tmp_path)
    full = {v.name: v.columns for v in open_store(root).views()}
    shutil.rmtree(root / "replays")
    shutil.rmtree(root / "aggregates")
    empty = open_store(root)
    assert {v.name: v.columns for v in empty.views()} == full
    assert all(cols for cols in full.values()), full
    for view in ("replay_steps", "routing", "routing_steps", "routing_segments", "routing_rollout",
                 "rollout_compare", "rollout_compare_steps", "annotations", "annotation_history"):
        assert empty.scalar(f"SELECT count(*) FROM {view}") == 0


def test_the_atomic_writer_creates_a_secret_owner_only_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    from horizonlens.storage.atomic import write_atomic, write_bytes_atomic

    target = tmp_path / "users.toml"
    modes = []

    def write(fh) -> None:  # noqa: ANN001 - an open binary file
        modes.append(os.fstat(fh.fileno()).st_mode & 0o777)  # before any byte is written
        fh.write(b"secret")

    write_atomic(target, write, mode=0o600)
    assert modes == [0o600] and stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_bytes() == b"secret"

    def fail(fh) -> None:  # noqa: ANN001
        fh.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(CorpusError, match="users.toml: cannot be written"):
        write_atomic(target, fail, mode=0o600)
    assert target.read_bytes() == b"secret" and sorted(p.name for p in tmp_path.iterdir()) == ["users.toml"]
    write_bytes_atomic(b"plain", tmp_path / "notes.txt")
    assert stat.S_IMODE((tmp_path / "notes.txt").stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
