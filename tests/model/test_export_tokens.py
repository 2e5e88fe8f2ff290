"""Token counts under a checkpoint's chat template, against direct tokenizer calls; --max-tokens; unrenderable runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from horizonlens.export import ExportOptions, export_runs, read_manifest
from horizonlens.query import open_store
from horizonlens.sample.bundled import bundled_dir, sample_checkpoint
from tests.support.corpora import make_corpus, step_row, traj_row
from tests.support.exports import CHAT_TEMPLATE, export_corpus

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def templated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """The bundled checkpoint with a stricter Qwen-style template instead of its own (it refuses a late system turn)."""
    from transformers import AutoTokenizer

    path = Path(shutil.copytree(sample_checkpoint(), tmp_path_factory.mktemp("ckpt") / "templated"))
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(str(path))
    return path, AutoTokenizer.from_pretrained(path, local_files_only=True)


@pytest.fixture(scope="module")
def untemplated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled checkpoint without its chat template."""
    path = Path(shutil.copytree(sample_checkpoint(), tmp_path_factory.mktemp("ckpt") / "untemplated"))
    (path / "chat_template.jinja").unlink()
    return path


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


def test_a_checkpoint_without_a_chat_template_says_so_per_run(corpus: Path, tmp_path: Path, untemplated: Path) -> None:
    report = export_runs(open_store(corpus), tmp_path / "kept", ExportOptions(checkpoint=str(untemplated)))
    assert report.runs == 6 and report.not_counted == 6 and report.tokens is None
    problems = [json.loads(line) for line in (tmp_path / "kept" / "problems.jsonl").read_text().splitlines()]
    assert len(problems) == 6 and all(p["action"] == "kept" and "has no chat template" in p["detail"]
                                      for p in problems)
    dropped = export_runs(open_store(corpus), tmp_path / "dropped",
                          ExportOptions(checkpoint=str(untemplated), max_tokens=1000))
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


def test_every_bundled_run_renders_through_the_bundled_checkpoints_template(tmp_path: Path) -> None:
    """The shipped checkpoint's template counts every exported row of the shipped corpus, as a trainer would."""
    from horizonlens.model.loader import load_tokenizer

    tok = load_tokenizer(sample_checkpoint())
    store = open_store(bundled_dir("corpus"))
    runs = store.scalar("SELECT count(*) FROM trajectories")
    report = export_runs(store, tmp_path / "out", ExportOptions(checkpoint=str(sample_checkpoint()), max_tokens=10**9))
    rows = _rows(tmp_path / "out")
    assert report.runs == len(rows) == runs and report.not_counted == 0 and not report.dropped
    for row in rows:
        assert row["n_tokens"] == _direct(tok, row)[0], row["trajectory_id"]
        assert row["over_max_tokens"] is False
    manifest = read_manifest(tmp_path / "out")
    assert manifest["tokens"]["chat_template"] is True
    assert manifest["tokens"]["total"] == report.tokens == sum(r["n_tokens"] for r in rows)


def test_the_bundled_template_is_the_text_the_checkpoint_was_trained_on() -> None:
    """Steps as chat messages through the bundled template give the Horizon Lens text, token for token, so an
    export's count is a replay's count; a replay still renders piece by piece (its exact token map)."""
    from horizonlens.ingest.chat import steps_to_messages
    from horizonlens.model.loader import load_tokenizer
    from horizonlens.model.render import HORIZONLENS_CHAT_TEMPLATE, render, trajectory_text

    tok = load_tokenizer(sample_checkpoint())
    assert tok.chat_template == HORIZONLENS_CHAT_TEMPLATE
    store = open_store(bundled_dir("corpus"))
    ids = store.query("SELECT trajectory_id FROM trajectories ORDER BY trajectory_id").column(0).to_pylist()
    with_knowledge = 0
    for tid in ids[::10]:
        steps = store.steps(tid).to_pylist()
        messages = steps_to_messages(steps)
        with_knowledge += any(m.get("name") == "knowledge" for m in messages)
        assert tok.apply_chat_template(messages, tokenize=False) == trajectory_text(steps), tid
        rendered = render(tok, steps, max_field_tokens=10**9)
        assert rendered.template == "horizonlens"
        assert len(tok.apply_chat_template(messages, tokenize=True, return_dict=False)) == len(rendered), tid
    assert with_knowledge  # the knowledge turns were among those compared
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|user|>\nhi\n<|assistant|>\n"


def test_a_rebuilt_checkpoint_writes_the_bundled_template(tiny_corpus: Path, tmp_path: Path) -> None:
    """`build-checkpoint` saves its tokenizer through `save_tokenizer`: the same template file as the bundled one."""
    from horizonlens.model.loader import load_tokenizer
    from horizonlens.model.render import HORIZONLENS_CHAT_TEMPLATE, trajectory_text
    from horizonlens.model.tokenizer import train_tokenizer
    from horizonlens.sample.checkpoint import save_tokenizer

    store = open_store(tiny_corpus)
    texts = [trajectory_text(store.steps(t).to_pylist()) for t in
             store.query("SELECT trajectory_id FROM trajectories LIMIT 8").column(0).to_pylist()]
    save_tokenizer(train_tokenizer(texts, 400), tmp_path)
    written = (tmp_path / "chat_template.jinja").read_bytes()
    assert written == (sample_checkpoint() / "chat_template.jinja").read_bytes()
    assert load_tokenizer(tmp_path).chat_template == HORIZONLENS_CHAT_TEMPLATE


def test_the_bundled_template_keeps_the_checkpoint_id_and_its_cached_replays(untemplated: Path, tmp_path: Path) -> None:
    """Replays render the Horizon Lens template piece by piece, as without a template: the id (which names the
    replay cache) is the same with or without it, and any other template gives another id."""
    from horizonlens.model.loader import checkpoint_id

    bundled = checkpoint_id(sample_checkpoint())
    assert bundled == checkpoint_id(untemplated)
    other = Path(shutil.copytree(sample_checkpoint(), tmp_path / "other"))
    (other / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    assert checkpoint_id(other) != bundled
    assert (bundled_dir("corpus") / "replays" / bundled).is_dir()  # the shipped replays are this checkpoint's
