"""Which steps a label may name: the steps of its run, as the corpus holds them when the label is written.

A label on step 999,999,999, or on a run the corpus does not have, points at nothing; every write of a label
(an addition, an edit, an import) checks its step against its run's step count here first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from horizonlens.corpus.files import corpus_dataset
from horizonlens.errors import CorpusError, LabelError
from horizonlens.storage.location import CorpusPath, as_location, read_table


class Located(Protocol):
    """What a check needs of a label: the run it names and its step (None: the whole run)."""

    @property
    def trajectory_id(self) -> str:
        """The run's id."""

    @property
    def step(self) -> int | None:
        """The step, or None for the whole run."""


def run_lengths(root: CorpusPath | str, trajectory_ids: Iterable[str]) -> dict[str, int]:
    """n_steps of each of these runs that the corpus at `root` has (read from its published files)."""
    wanted = pa.array(sorted(set(trajectory_ids)), pa.string())
    if not len(wanted):
        return {}
    location = as_location(root)
    out: dict[str, int] = {}
    for path in corpus_dataset(location).snapshot().paths("trajectories"):
        try:
            table = read_table(path, columns=["trajectory_id", "n_steps"])
        except (OSError, pa.ArrowException, CorpusError) as exc:
            raise LabelError(f"{path}: cannot read the runs' step counts ({exc})") from exc
        mine = table.filter(pc.is_in(table["trajectory_id"], value_set=wanted))
        out.update(zip(mine["trajectory_id"].to_pylist(), (int(n or 0) for n in mine["n_steps"].to_pylist()),
                       strict=True))
    return out


def check_steps(root: CorpusPath | str, labels: Sequence[Located]) -> None:
    """LabelError unless every label's run is in the corpus and its step (if any) is one of the run's steps."""
    lengths = run_lengths(root, (x.trajectory_id for x in labels))
    for x in labels:
        if x.trajectory_id not in lengths:
            raise LabelError(f"no trajectory {x.trajectory_id!r} in this corpus")
        if x.step is not None and x.step >= lengths[x.trajectory_id]:
            raise LabelError(f"step {x.step} is past the end of {x.trajectory_id} ({lengths[x.trajectory_id]} steps: "
                             f"0 to {lengths[x.trajectory_id] - 1})")
