"""Where the bundled sample corpus and checkpoint are, in a source checkout or an installed wheel.

Both ship as package data (`horizonlens.sample_data`). The checkpoint is only read, so it is used in
place. A corpus is written to (replays are cached in it, labels and indexes are added), and site-packages
may be read-only or shared, so on first use the sample corpus is copied into the user's data directory
(`$HORIZONLENS_HOME`, else `$XDG_DATA_HOME/horizonlens`, else `~/.local/share/horizonlens`), with a
message saying so. A newer bundled corpus gets a new copy; an older copy is left alone.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Callable

from horizonlens.errors import CorpusError

PACKAGE = "horizonlens"


def bundled_dir(name: str) -> Path:
    """The packaged folder `corpus` or `checkpoint` (a real directory: wheels install unzipped)."""
    path = Path(str(files(PACKAGE) / "sample_data" / name))
    if not path.is_dir():
        raise CorpusError(f"the bundled sample {name} is missing from this installation ({path})")
    return path


def data_home() -> Path:
    """The user's Horizon Lens data directory."""
    if os.environ.get("HORIZONLENS_HOME"):
        return Path(os.environ["HORIZONLENS_HOME"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "horizonlens"


def _fingerprint(corpus: Path) -> str:
    """Identifies a bundled corpus by its manifest (which changes whenever the corpus is regenerated)."""
    return hashlib.sha256((corpus / "manifest.json").read_bytes()).hexdigest()[:12]


def sample_checkpoint() -> Path:
    """The bundled sample checkpoint, used in place."""
    return bundled_dir("checkpoint")


def sample_corpus(log: Callable[[str], None] | None = None) -> Path:
    """A writable copy of the bundled sample corpus, made on first use."""
    source = bundled_dir("corpus")
    target = data_home() / f"sample-corpus-{_fingerprint(source)}"
    if (target / "manifest.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if log:
        log(f"First use: copying the bundled sample corpus to {target}")
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-sample-"))
    try:
        # follow links: a source checkout's editable install links each file
        shutil.copytree(source, staging / "corpus", symlinks=False,
                        ignore=shutil.ignore_patterns(".*", "__pycache__"))
        os.replace(staging / "corpus", target)
    except OSError as exc:
        if (target / "manifest.json").exists():  # another process copied it first
            return target
        raise CorpusError(f"could not copy the sample corpus to {target} ({exc}); set HORIZONLENS_HOME to a "
                          "writable directory") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
