"""Token counts under a checkpoint's chat template, against direct tokenizer calls; --max-tokens; unrenderable runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from horizonlens.export import ExportOptions, export_runs, read_manifest
from horizonlens.query import open_store
from horizonlens.sample.bundled import sample_checkpoint
from tests.support.corpora import make_corpus, step_row, traj_row
from tests.support.exports import CHAT_TEMPLATE, export_corpus

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def templated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """The bundled checkpoint (which has no chat template) with a Qwen-style template added to its tokenizer."""
    from transformers import AutoTokenizer

    path = Path(shutil.copytree(sample_checkpoint(), tmp_path_factory.mktemp("ckpt") / "templated"))
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(str(path))
    return path, AutoTokenizer.from_pretrained(path, local_files_only=True)


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    return export_corpus(tmp_path / "corpus")


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]


def _direct(tok, row: dict) -> tuple[int, int]:  # noqa: ANN001
    """Tokens of one row: apply_chat_template's own tokenization, and the tokenizer on the rendered text."""
    ids = tok.apply_chat_template(row["messages"], tools=row.get("tools"), tokenize=True, return_dict=False)
    text = tok.apply_chat_template(row["messages"], tools=row.get("tools"), tokenize=False)
    return len(ids), len(tok(text, add_special_tokens=False)["input_ids"])


def test_token_counts_match_the_tokenizer(corpus: Path, tmp_path: Path, templated) -> None:
    path, tok = templated
    out = tmp_path / "out"
    report = export_runs(open_store(corpus), out, ExportOptions(checkpoint=str(path)))
    rows = _rows(out)
    assert len(rows) == 6
    for row in rows:
        by_template, by_text = _direct(tok, row)
        assert row["n_tokens"] == by_template == by_text, row["trajectory_id"]
    ok = next(r for r in rows if r["trajectory_id"] == "ok-t0")
    assert "search the docs" in tok.apply_chat_template(ok["messages"], tools=ok["tools"], tokenize=False).lower()
    manifest = read_manifest(out)
    assert manifest["tokens"]["total"] == report.tokens == sum(r["n_tokens"] for r in rows)
    assert manifest["tokens"]["chat_template"] is True and manifest["tokens"]["checkpoint"].startswith("qwen3")


def test_max_tokens_drops_or_flags(corpus: Path, tmp_path: Path, templated) -> None:
    path, _ = templated
    counts = {r["trajectory_id"]: r["n_tokens"]
              for r in (export_runs(open_store(corpus), tmp_path / "all", ExportOptions(checkpoint=str(path))),
                        _rows(tmp_path / "all"))[1]}
    limit = sorted(counts.values())[2]  # three runs fit, three do not
    over = sorted(t for t, n in counts.items() if n > limit)
    export_runs(open_store(corpus), tmp_path / "drop", ExportOptions(checkpoint=str(path), max_tokens=limit))
    assert sorted(r["trajectory_id"] for r in _rows(tmp_path / "drop")) == sorted(set(counts) - set(over))
    assert read_manifest(tmp_path / "drop")["counts"]["dropped"] == {"over --max-tokens": len(over)}
    export_runs(open_store(corpus), tmp_path / "flag", ExportOptions(checkpoint=str(path), max_tokens=limit,
                                                                     over_max_tokens="flag"))
    flagged = {r["trajectory_id"]: r["over_max_tokens"] for r in _rows(tmp_path / "flag")}
    assert sorted(t for t, f in flagged.items() if f) == over and len(flagged) == 6


def test_unrenderable_runs_are_reported_and_the_rest_exports(tmp_path: Path, templated) -> None:
    path, _ = templated
    corpus = make_corpus(tmp_path / "c", [traj_row("two-sys-t0", 3), traj_row("fine-t0", 2)], [
        step_row("two-sys-t0", 0, "system", None, message="first"), step_row("two-sys-t0", 1, "system", None,
                                                                               message="second"),
        step_row("two-sys-t0", 2, message="hi"),
        step_row("fine-t0", 0, "user", None, message="hello"), step_row("fine-t0", 1, message="hi")])
    report = export_runs(open_store(corpus), tmp_path / "out", ExportOptions(checkpoint=str(path)))
    assert [r["trajectory_id"] for r in _rows(tmp_path / "out")] == ["fine-t0"]
    assert report.dropped == {"not renderable": 1}
    problem = json.loads((tmp_path / "out" / "problems.jsonl").read_text())
    assert problem["trajectory_id"] == "two-sys-t0" and "a system message must come first" in problem["detail"]


def test_a_checkpoint_without_a_chat_template_says_so_per_run(corpus: Path, tmp_path: Path) -> None:
    report = export_runs(open_store(corpus), tmp_path / "kept", ExportOptions(checkpoint=str(sample_checkpoint())))
    assert report.runs == 6 and report.not_counted == 6 and report.tokens is None
    problems = [json.loads(line) for line in (tmp_path / "kept" / "problems.jsonl").read_text().splitlines()]
    assert len(problems) == 6 and all(p["action"] == "kept" and "has no chat template" in p["detail"]
                                      for p in problems)
    dropped = export_runs(open_store(corpus), tmp_path / "dropped",
                          ExportOptions(checkpoint=str(sample_checkpoint()), max_tokens=1000))
    assert dropped.runs == 0 and dropped.dropped == {"tokens not counted": 6}  # the limit cannot be checked


def test_parquet_rows_render_as_datasets_loads_them(corpus: Path, tmp_path: Path, templated) -> None:
    datasets = pytest.importorskip("datasets")
    path, tok = templated
    out = tmp_path / "out"
    export_runs(open_store(corpus), out, ExportOptions(format="hf-parquet", checkpoint=str(path)))
    loaded = datasets.load_dataset("parquet", data_files=str(out / "train.parquet"), split="train",
                                   cache_dir=str(tmp_path / "hf-cache"))
    expected = {r["trajectory_id"]: r["n_tokens"] for r in pq.read_table(out / "train.parquet").to_pylist()}
    for row in loaded:
        tools = json.loads(row["tools"]) if row["tools"] else None
        ids = tok.apply_chat_template(row["messages"], tools=tools, tokenize=True, return_dict=False)
        assert len(ids) == expected[row["trajectory_id"]] == row["n_tokens"]
