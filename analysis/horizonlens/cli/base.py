"""The command group every `horizonlens` command registers on, and the helpers they share."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn

import typer
from typer.core import TyperGroup

from horizonlens.errors import HorizonLensError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


# `horizonlens --help` lists commands in the order of a user's work, not of the modules that define them;
# a command missing here follows these, in the order it was registered.
HELP_ORDER = ("sample", "sql", "import", "index", "metrics", "replay", "compact", "build-checkpoint", "modes", "bench",
              "serve")


class _Commands(TyperGroup):
    """Every command's user errors (the HorizonLensError family) end as one red line and exit code 1."""

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: HELP_ORDER.index(n) if n in HELP_ORDER else len(HELP_ORDER))

    # Any: ctx is the Context of the click that typer runs on, which recent typer vendors under a private name.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except HorizonLensError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None


app = typer.Typer(cls=_Commands, add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Horizon Lens: browse long-horizon agent trajectories, replay them through a MoE "
                       "checkpoint, measure error compounding.")


def sample_corpus_path() -> Path:
    """A writable copy of the bundled sample corpus (made on first use, with a message)."""
    from horizonlens.sample.bundled import sample_corpus

    return sample_corpus(log=lambda m: typer.secho(m, err=True))


def sample_checkpoint_path() -> Path:
    """The bundled sample checkpoint."""
    from horizonlens.sample.bundled import sample_checkpoint

    return sample_checkpoint()


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one red error line and exit with `code`."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def progress_bar(total: int, label: str) -> tuple[Progress, TaskID]:
    """A Rich progress bar on stderr (silent when stderr is not a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        transient=not sys.stderr.isatty(), disable=not sys.stderr.isatty())
    return progress, progress.add_task(label, total=total)


def replay_progress(trajectories: int, tokens: int) -> tuple[Progress, Callable[[int, int, int], None]]:
    """A Rich display of a batch replay: trajectories done, tokens/s and ETA (silent when stderr is no terminal).

    The bar and the ETA follow the corpus's token estimates (a 70k-token trajectory weighs 50 short ones);
    tokens/s counts tokens actually run through the model since the display started.
    """
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(TextColumn("replaying"), BarColumn(),
                        TextColumn("{task.fields[done]:,}/{task.fields[trajectories]:,} trajectories"),
                        TextColumn("{task.fields[rate]} tokens/s"), TimeElapsedColumn(), TextColumn("ETA"),
                        TimeRemainingColumn(), transient=not sys.stderr.isatty(), disable=not sys.stderr.isatty())
    task = progress.add_task("replay", total=max(1, tokens), done=0, trajectories=trajectories, rate="-")
    started = time.perf_counter()
    replayed = [0, 0]

    def advance(n_trajectories: int, estimated_tokens: int, replayed_tokens: int) -> None:
        replayed[0] += n_trajectories
        replayed[1] += replayed_tokens
        rate = replayed[1] / max(1e-9, time.perf_counter() - started)
        progress.update(task, advance=estimated_tokens, done=replayed[0], rate=f"{rate:,.0f}")

    return progress, advance


def json_records(df: Any) -> list[dict[str, Any]]:
    """DataFrame → JSON-safe records (NaN/inf → null)."""
    out = []
    for row in df.to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and not math.isfinite(v) else
                        v.item() if hasattr(v, "item") else v) for k, v in row.items()})
    return out
