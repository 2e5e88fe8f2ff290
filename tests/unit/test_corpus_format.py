"""The corpus contract: schema round-trips, validation messages, corrupt files, atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from horizonlens.corpus import files as io
from horizonlens.corpus.files import CorpusError, open_corpus_files, write_corpus
from horizonlens.corpus.schema import SCHEMA_VERSION, STEPS, TRAJECTORIES
from horizonlens.query.store import open_store
from horizonlens.replays.migrate import migrate
from tests.support.corpora import make_corpus, step_row, traj_row


def _part(root: Path, table: str) -> Path:
    return next((root / table).rglob("*.parquet"))


def _hand_made(root: Path) -> Path:
    """The same corpus as if written by hand: a manifest without a file list (to be upgraded by `migrate`)."""
    manifest = json.loads((root / "manifest.json").read_text())
    manifest.pop("files")
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _migrated(root: Path) -> Path:
    """A hand-made corpus after `horizonlens migrate` recorded its files as they are now."""
    assert migrate(_hand_made(root)).corpus_listed
    return root


def _tables():
    trajs = [traj_row("a-t0", 2), traj_row("b-t0", 1, outcome="failure")]
    steps = [step_row("a-t0", 1, tool_calls=[{"id": "1", "name": "x", "arguments": "{}"}]),
             step_row("a-t0", 0, "user", None), step_row("b-t0", 0, check=False, error_label="boom")]
    return pa.Table.from_pylist(trajs, schema=TRAJECTORIES), pa.Table.from_pylist(steps, schema=STEPS)


def test_round_trip_keeps_rows_and_sorts_steps(tmp_path: Path) -> None:
    trajs, steps = _tables()
    root = write_corpus(tmp_path / "c", trajs, steps, io.new_manifest(["t"]))
    files = open_corpus_files(root)
    assert files.manifest["schema_version"] == SCHEMA_VERSION
    back = pq.read_table(files.files["steps"][0])
    assert back.num_rows == 3
    keys = list(zip(back["trajectory_id"].to_pylist(), back["step"].to_pylist(), strict=True))
    assert keys == [("a-t0", 0), ("a-t0", 1), ("b-t0", 0)]
    assert back.schema.equals(STEPS, check_metadata=False)
    assert pq.read_table(files.files["trajectories"][0]).schema.equals(TRAJECTORIES, check_metadata=False)


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    root = make_corpus(tmp_path / "c", [traj_row("a-t0", 1)], [step_row("a-t0", 0)])
    part = _part(root, "steps")
    pq.write_table(pq.read_table(part).drop_columns(["check_passed"]), part)
    _migrated(root)
    with pytest.raises(CorpusError, match=rf"{part.name}.*missing column 'check_passed'"):
        open_corpus_files(root)


def test_wrong_type_names_file_and_column(tmp_path: Path) -> None:
    root = make_corpus(tmp_path / "c", [traj_row("a-t0", 1)], [step_row("a-t0", 0)])
    part = _part(root, "trajectories")
    table = pq.read_table(part)
    table = table.set_column(table.schema.get_field_index("n_steps"), "n_steps", pa.array(["many"]))
    pq.write_table(table, part)
    _migrated(root)
    with pytest.raises(CorpusError, match=r"trajectories.*column 'n_steps' has type string"):
        open_corpus_files(root)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_parquet_gives_clear_error(tmp_path: Path, damage: str) -> None:
    root = make_corpus(tmp_path / "c", [traj_row("a-t0", 1)], [step_row("a-t0", 0)])
    part = _part(root, "steps")
    data = part.read_bytes()
    part.write_bytes({"truncate": data[: len(data) // 2], "garbage": os.urandom(300), "empty": b""}[damage])
    with pytest.raises(CorpusError, match=rf"{part.name}: .*bytes on disk but .* when written"):
        open_store(root)  # the manifest's recorded size catches it before any Parquet is parsed
    with pytest.raises(CorpusError, match="horizonlens migrate"):
        open_store(_hand_made(root))  # without a file list: refused, naming the upgrade
    with pytest.raises(CorpusError, match=rf"{part.name}: not a readable Parquet file"):
        migrate(root)  # which checks each footer before it records a file
    assert "files" not in json.loads((root / "manifest.json").read_text())  # and records nothing then


def test_manifest_problems(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="not a directory"):
        open_corpus_files(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no manifest.json"):
        open_corpus_files(tmp_path / "empty")
    root = make_corpus(tmp_path / "c", [traj_row("a-t0", 1)], [step_row("a-t0", 0)])
    (root / "manifest.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(CorpusError, match="schema_version 99"):
        open_corpus_files(root)
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(CorpusError, match="not valid JSON"):
        open_corpus_files(root)


def test_bad_values_are_refused_and_existing_corpus_kept(tmp_path: Path) -> None:
    root = make_corpus(tmp_path / "c", [traj_row("a-t0", 1)], [step_row("a-t0", 0)])
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    trajs, steps = _tables()
    bad = trajs.set_column(trajs.schema.get_field_index("outcome"), "outcome", pa.array(["maybe", "success"]))
    with pytest.raises(CorpusError, match="column 'outcome' has value 'maybe'"):
        write_corpus(root, bad, steps, io.new_manifest(["t"]), overwrite=True)
    dup = pa.concat_tables([trajs, trajs])
    with pytest.raises(CorpusError, match="duplicate"):
        write_corpus(root, dup, steps, io.new_manifest(["t"]), overwrite=True)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_failure_during_write_leaves_corpus_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_corpus(tmp_path / "c", [traj_row("a-t0", 1)], [step_row("a-t0", 0)])
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    trajs, steps = _tables()

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    from horizonlens.storage import atomic

    monkeypatch.setattr(atomic, "write_json_atomic", boom)
    with pytest.raises(OSError, match="disk full"):
        write_corpus(root, trajs, steps, io.new_manifest(["t"]), overwrite=True)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_refuses_to_overwrite_without_flag(tmp_path: Path) -> None:
    root = make_corpus(tmp_path / "c", [traj_row("a-t0", 1)], [step_row("a-t0", 0)])
    trajs, steps = _tables()
    with pytest.raises(CorpusError, match="not empty"):
        write_corpus(root, trajs, steps, io.new_manifest(["t"]))
