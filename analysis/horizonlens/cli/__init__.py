"""The `horizonlens` command line: one entry point over the same functions the app uses."""

from horizonlens.cli.main import app, main

__all__ = ["app", "main"]
