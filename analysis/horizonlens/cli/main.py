"""The `horizonlens` command line: one entry point over the same functions the app uses.

Each command (or group) lives in the module named after it, `<command>_cmds.py`, and registers itself on `app`
when imported here.
"""

from __future__ import annotations

from horizonlens.cli import (
    annotate_cmds,
    bench_cmds,
    diff_cmds,
    export_cmds,
    import_cmds,
    metrics_cmds,
    migrate_cmds,
    modes_cmds,
    replay_cmds,
    routing_cmds,
    sample_cmds,
    serve_cmds,
    sql_cmds,
    users_cmds,
)
from horizonlens.cli.base import app

__all__ = ["annotate_cmds", "app", "bench_cmds", "diff_cmds", "export_cmds", "import_cmds", "main", "metrics_cmds",
           "migrate_cmds", "modes_cmds", "replay_cmds", "routing_cmds", "sample_cmds", "serve_cmds", "sql_cmds",
           "users_cmds"]


def main() -> None:  # pragma: no cover - console entry
    """The console entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
