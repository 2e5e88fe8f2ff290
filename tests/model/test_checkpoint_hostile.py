"""Hostile and damaged checkpoints: a clear CheckpointError at load (or when computing the id), never a hang.

Each case starts from a good tiny Mixtral checkpoint and breaks one thing. Functions that could block run in
a thread with a deadline, so a regression shows as a failed test, not a stuck suite.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

pytest.importorskip("torch")

from horizonlens.errors import CheckpointError  # noqa: E402
from horizonlens.model.loader import check_files, checkpoint_id, load_checkpoint, usable_checkpoint_id  # noqa: E402
from horizonlens.replays.layout import CHECKPOINT_ID  # noqa: E402
from tests.support.model_zoo import build  # noqa: E402

pytestmark = pytest.mark.model
DEADLINE_S = 60.0  # far above the milliseconds these take; only a hang reaches it


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    return build("mixtral", tmp_path_factory.mktemp("good") / "mixtral", tiny_tokenizer)


def _within(fn: Callable[[], Any]) -> Any:
    """fn() run in a thread; fails the test if it is still running after DEADLINE_S (a hang)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLINE_S)
    assert not thread.is_alive(), f"still running after {DEADLINE_S:.0f} s: it hangs"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _edit_config(d: Path, **changes: Any) -> None:
    config = json.loads((d / "config.json").read_text())
    config.update(changes)
    (d / "config.json").write_text(json.dumps(config))


def _truncate_weights(d: Path) -> None:
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _replace(name: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        (d / name).unlink(missing_ok=True)
        make(d / name)
    return edit


def _sparse(size: int) -> Callable[[Path], None]:
    def make(f: Path) -> None:
        with f.open("wb") as fh:
            fh.truncate(size)
    return make


# (what is broken, how, what the error says, whether checkpoint_id must refuse too)
CASES: list[tuple[str, Callable[[Path], None], str, bool]] = [
    ("config not JSON", lambda d: (d / "config.json").write_text("{not json"), "not valid JSON", True),
    ("config a list", lambda d: (d / "config.json").write_text("[1, 2]"), "a JSON list, expected an object", True),
    ("config nested deep", lambda d: (d / "config.json").write_text("[" * 100_000 + "]" * 100_000), "nested", True),
    ("config not UTF-8", lambda d: (d / "config.json").write_bytes(b'{"a": "\xff"}'), "not UTF-8", True),
    ("config field of the wrong type", lambda d: _edit_config(d, num_hidden_layers="three"), "cannot read config",
     False),
    ("weights truncated", _truncate_weights, "truncated", False),
    ("weights garbage", lambda d: (d / "model.safetensors").write_bytes(os.urandom(4096)), "header claims", False),
    ("weights empty", lambda d: (d / "model.safetensors").write_bytes(b""), "too short", False),
    ("header not JSON", lambda d: (d / "model.safetensors").write_bytes((5).to_bytes(8, "little") + b"{oops"),
     "not valid JSON", False),
    ("more experts per token than experts", lambda d: _edit_config(d, num_experts_per_tok=20),
     "routes each token to 20 experts but a layer has 8", False),
    ("zero experts per token", lambda d: _edit_config(d, num_experts_per_tok=0), "routes each token to 0", False),
    ("chat template a FIFO", _replace("chat_template.jinja", os.mkfifo), "a FIFO, not a regular file", True),
    ("chat template links to /dev/zero", _replace("chat_template.jinja", lambda f: f.symlink_to("/dev/zero")),
     "a character device", True),
    ("chat template huge", _replace("chat_template.jinja", _sparse(100 * 2**20)), "more than the 64 MB", True),
    ("tokenizer config a FIFO", _replace("tokenizer_config.json", os.mkfifo), "a FIFO", True),
    ("tokenizer links to /dev/zero", _replace("tokenizer.json", lambda f: f.symlink_to("/dev/zero")),
     "a character device", True),
    ("config a FIFO", _replace("config.json", os.mkfifo), "a FIFO", True),
    ("weights link to /dev/zero", _replace("model.safetensors", lambda f: f.symlink_to("/dev/zero")),
     "a character device", True),
    ("a FIFO in a subfolder", lambda d: ((d / "additional_chat_templates").mkdir(),
                                         os.mkfifo(d / "additional_chat_templates" / "tool.jinja")), "a FIFO", False),
    ("a dangling link", _replace("special_tokens_map.json", lambda f: f.symlink_to("/nonexistent/file")),
     "cannot be read", True),
]


@pytest.mark.parametrize("what, breaks, message, id_refuses", CASES, ids=[c[0] for c in CASES])
def test_hostile_checkpoint_is_refused_clearly(good: Path, tmp_path: Path, what: str,
                                               breaks: Callable[[Path], None], message: str,
                                               id_refuses: bool) -> None:
    d = Path(shutil.copytree(good, tmp_path / "ckpt", symlinks=True))
    breaks(d)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        _within(lambda: load_checkpoint(d))
    if id_refuses:
        with pytest.raises(CheckpointError, match=re.escape(message)):
            _within(lambda: checkpoint_id(d))
    else:
        assert CHECKPOINT_ID.match(_within(lambda: checkpoint_id(d)))


def test_checks_come_before_loading(good: Path, tmp_path: Path) -> None:
    """check_files (what the sidebar runs on a typed path) already refuses damaged weights and special files."""
    d = Path(shutil.copytree(good, tmp_path / "ckpt"))
    _truncate_weights(d)
    with pytest.raises(CheckpointError, match="truncated"):
        check_files(d, allow_pickle=False)


def test_usable_checkpoint_id_is_none_for_what_cannot_be_used(good: Path, tmp_path: Path) -> None:
    """What the sidebar and the pages show: the id of a usable checkpoint, None for anything else."""
    assert usable_checkpoint_id(good) == checkpoint_id(good)
    assert usable_checkpoint_id(str(good)) == checkpoint_id(good)
    d = Path(shutil.copytree(good, tmp_path / "ckpt"))
    _truncate_weights(d)
    assert usable_checkpoint_id(d) is None
    assert usable_checkpoint_id(tmp_path / "absent") is None
    assert usable_checkpoint_id("") is None  # no checkpoint chosen: not the working directory


def test_linked_files_are_fine(good: Path, tmp_path: Path) -> None:
    """A hub-cache layout (every file a link to a blob elsewhere) loads, with the same id as the plain folder."""
    blobs, snap = tmp_path / "blobs", tmp_path / "snapshot"
    blobs.mkdir()
    snap.mkdir()
    for f in good.iterdir():
        shutil.copy(f, blobs / f.name)
        (snap / f.name).symlink_to(blobs / f.name)
    assert checkpoint_id(snap) == checkpoint_id(good)
    assert load_checkpoint(snap).top_k == 2


def test_checkpoint_id_is_a_safe_folder_name(good: Path, tmp_path: Path) -> None:
    d = Path(shutil.copytree(good, tmp_path / "ckpt"))
    _edit_config(d, architectures=["../../Evil/<b>x</b>"])
    ckpt = checkpoint_id(d)
    assert CHECKPOINT_ID.match(ckpt) and "/" not in ckpt and "<" not in ckpt
    _edit_config(d, architectures=[42])
    assert CHECKPOINT_ID.match(checkpoint_id(d))


# --- every reader of a checkpoint applies the same checks ------------------------------------------------------
@pytest.mark.parametrize("what, breaks, message, id_refuses", CASES, ids=[c[0] for c in CASES])
def test_routing_import_reads_a_checkpoint_with_the_same_checks(good: Path, tmp_path: Path, what: str,
                                                                breaks: Callable[[Path], None], message: str,
                                                                id_refuses: bool) -> None:
    """`routing import` finds the routing shape from the config: the same refusal as a replay, never a hang."""
    from horizonlens.model.rollout_files import routing_shape

    d = Path(shutil.copytree(good, tmp_path / "ckpt", symlinks=True))
    breaks(d)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        _within(lambda: routing_shape(d))


def test_routing_import_cli_with_a_fifo_config_says_so(good: Path, tmp_path: Path, tiny_corpus: Path) -> None:
    import subprocess
    import sys

    d = Path(shutil.copytree(good, tmp_path / "ckpt", symlinks=True))
    (d / "config.json").unlink()
    os.mkfifo(d / "config.json")
    rollout = tmp_path / "r.jsonl"
    rollout.write_text(json.dumps({"trajectory_id": "x", "token_ids": [1, 2], "routed_experts": [[[0, 1]] * 3]}))
    proc = subprocess.run([sys.executable, "-m", "horizonlens.cli", "routing", "import", str(rollout), "--into",
                           str(tiny_corpus), "--checkpoint", str(d)], capture_output=True, text=True,
                          timeout=DEADLINE_S)
    assert proc.returncode == 1 and "config.json: a FIFO, not a regular file" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("name, make, message", [
    ("tokenizer.json", os.mkfifo, "a FIFO"),
    ("tokenizer.json", lambda f: f.symlink_to("/dev/zero"), "a character device"),
    ("chat_template.jinja", _sparse(100 * 2**20), "more than the 64 MB"),
])
def test_build_checkpoint_shape_copies_only_a_checked_tokenizer(good: Path, tmp_path: Path, name: str,
                                                                make: Callable[[Path], None], message: str) -> None:
    """`build-checkpoint --shape` (and bench) copy a tokenizer folder: a FIFO or a device there is refused."""
    from horizonlens.model.shapes import build_shape

    source = Path(shutil.copytree(good, tmp_path / "tok", symlinks=True))
    _replace(name, make)(source)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        _within(lambda: build_shape("agents-a1", tmp_path / "out", source, layers=2, experts=8))
    assert not (tmp_path / "out").exists()


def test_checkpoint_id_of_a_missing_folder_is_a_checkpoint_error(tmp_path: Path) -> None:
    for path in (tmp_path / "missing", tmp_path / "file"):
        if path.name == "file":
            path.write_text("{}")
        with pytest.raises(CheckpointError, match="not a directory"):
            checkpoint_id(path)
