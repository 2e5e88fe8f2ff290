"""The `horizonlens` command line: one entry point over the same functions the app uses.

Each command group lives in its own module and registers itself on `app` when imported here.
"""

from __future__ import annotations

from horizonlens.cli import (
    annotate_cmds,
    corpus_cmds,
    metrics_cmds,
    model_cmds,
    modes_cmds,
    routing_cmds,
    serve_cmds,
)
from horizonlens.cli.base import app

__all__ = ["annotate_cmds", "app", "corpus_cmds", "main", "metrics_cmds", "model_cmds", "modes_cmds", "routing_cmds",
           "serve_cmds"]


def main() -> None:  # pragma: no cover - console entry
    """The console entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
