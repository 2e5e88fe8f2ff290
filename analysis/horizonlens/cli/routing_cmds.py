"""`horizonlens routing`: import the experts an inference engine chose, and compare them with the replay's.

`routing import` reads vLLM, SGLang or .npz rollout routing (docs/routing.md), matches each record to a
corpus trajectory, aligns its tokens with the replay's rendering, and stores it as the `rollout` source
of the checkpoint's token tier together with its comparison to the replay, in one commit.
`routing compare` recomputes the comparison (after a trajectory was replayed again, or imported with
`--no-replay`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional

import typer

from horizonlens.cli.base import app, progress_bar

if TYPE_CHECKING:
    import pyarrow as pa

    from horizonlens.ingest.readers import Problem
    from horizonlens.model import AlignedRollout, Reference, RolloutRef, RolloutRouting, RoutingShape
    from horizonlens.query.store import CorpusStore

BATCH_ROWS = 4_000_000  # token rows (token x layer) per file: ~100k tokens at 40 layers, a few hundred MB at most

routing_app = typer.Typer(no_args_is_help=True, help="Rollout routing: what an inference engine (vLLM, SGLang) "
                                                     "chose, beside the replay's routing of the same tokens.")
app.add_typer(routing_app, name="routing")


@dataclass
class RolloutImport:
    """What `routing import` did: the counts the command prints."""

    records: int = 0
    imported: list[str] = field(default_factory=list)
    compared: list[str] = field(default_factory=list)
    replayed: list[str] = field(default_factory=list)
    alignment: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def summary(self) -> str:
        """One line: trajectories imported, compared, replayed, the aligned share, problems."""
        shares = [a["aligned_share"] for a in self.alignment.values()]
        aligned = (f"; aligned share {min(shares):.1%}–{max(shares):.1%}" if len(shares) > 1 and
                   min(shares) != max(shares) else f"; aligned share {shares[0]:.1%}" if shares else "")
        return (f"{len(self.imported)} of {self.records} rollout records imported, {len(self.compared)} compared "
                f"with the replay ({len(self.replayed)} replayed first){aligned}; {len(self.problems)} problem(s)")


def import_rollouts(store: CorpusStore, checkpoint: Path, files: list[Path], fmt: str | None = None,
                    replay: bool = True, log: Callable[[str], None] | None = None) -> RolloutImport:
    """Read, check, match, align, compare and store rollout routing files (see the module docstring).

    Two passes over the files, each holding one record at a time: the first checks every record and
    keeps only who it is (so unmatched records are known, and missing replays are run, before anything
    is written); the second reads the matched records again and aligns and stores them. Nothing is written
    when no record is usable; otherwise the usable records are published in one commit and the others
    come back as problems.
    """
    from horizonlens.model import RolloutRouting, checkpoint_id, iter_rollouts, resolve_ids, routing_shape
    from horizonlens.replays import ReplayCache

    shape = routing_shape(checkpoint)
    ckpt_id = checkpoint_id(checkpoint)
    refs: list[RolloutRef] = []
    problems: list[Problem] = []
    for item in iter_rollouts(files, shape, fmt):
        if isinstance(item, RolloutRouting):
            refs.append(item.ref())
        else:
            problems.append(item)
    report = RolloutImport(records=len(refs) + len(problems), problems=problems)
    refs, unmatched = resolve_ids(store, refs)
    report.problems += unmatched
    if not refs:
        return report
    if replay:
        report.replayed = _replay_missing(store, checkpoint, ckpt_id, [r.trajectory_id for r in refs], log)
    wanted = {r.key: r for r in refs}

    def batches() -> Iterator[tuple[dict[str, dict[str, pa.Table]], dict[str, dict[str, Any]]]]:
        """Aligned, compared rollouts, a few trajectories at a time (memory stays ~ BATCH_ROWS token rows)."""
        batch: dict[str, dict[str, pa.Table]] = {}
        rows = 0
        for r in _matched(iter_rollouts(files, shape, fmt), wanted, report):
            tables = _aligned_tables(store, checkpoint, ckpt_id, shape, r, report)
            if tables is None:
                continue
            batch[r.trajectory_id] = tables
            rows += tables["rollout_tokens"].num_rows
            if rows >= BATCH_ROWS:
                yield batch, report.alignment
                batch, rows = {}, 0
        if batch:
            yield batch, report.alignment

    if ReplayCache(store.root, ckpt_id).write_rollouts(batches()):
        report.imported = list(report.alignment)
        store.refresh()
    return report


def _matched(records: Iterator[RolloutRouting | Problem], wanted: dict[tuple[str, str], RolloutRef],
             report: RolloutImport) -> Iterator[RolloutRouting]:
    """The second pass's records that the first pass matched to a trajectory, with that trajectory set."""
    from horizonlens.model import RolloutRouting

    seen: set[tuple[str, str]] = set()
    for item in records:
        if not isinstance(item, RolloutRouting):
            continue  # reported by the first pass
        ref = wanted.get((item.file, item.where))
        if ref is None:
            continue
        seen.add(ref.key)
        item.trajectory_id = ref.trajectory_id
        yield item
    for key, ref in wanted.items():
        if key not in seen:
            report.problems.append(ref.problem("the file changed while it was imported; this record is left out"))


def _aligned_tables(store: CorpusStore, checkpoint: Path, ckpt_id: str, shape: RoutingShape, r: RolloutRouting,
                    report: RolloutImport) -> dict[str, pa.Table] | None:
    """A record aligned with its trajectory's rendering, as token-tier (and comparison) tables; None if none aligns."""
    from horizonlens.model import align_rollout

    reference, replay_routing = _reference(store, checkpoint, ckpt_id, r.trajectory_id)
    aligned = align_rollout(r, reference)
    if not len(aligned.token_index):
        report.problems.append(r.problem(f"none of its {len(r.token_ids):,} tokens with routing are in the rendering "
                                         f"of {r.trajectory_id!r}: recorded from another trajectory?"))
        return None
    report.alignment[r.trajectory_id] = aligned.stats
    tables = _tables(aligned, shape, replay_routing)
    if "rollout_compare" in tables:
        report.compared.append(r.trajectory_id)
    return tables


def _replay_missing(store: CorpusStore, checkpoint: Path, ckpt_id: str, tids: list[str],
                    log: Callable[[str], None] | None) -> list[str]:
    """Replay (with token-level routing) the trajectories that have no such replay yet."""
    from horizonlens.model import ReplayConfig, ensure_replayed, load_checkpoint
    from horizonlens.replays import ReplayCache

    cache = ReplayCache(store.root, ckpt_id)
    missing = [t for t in tids if not cache.has(t, tokens=True)]
    if not missing:
        return []
    loaded = load_checkpoint(checkpoint)
    progress, task = progress_bar(len(missing), "replaying")
    with progress:
        for tid in missing:
            if log:
                log(f"replaying {tid} (it has no replay through {ckpt_id} yet)")
            ensure_replayed(store, loaded, tid, ReplayConfig(routing="tokens"), force=True)
            progress.advance(task)
    return missing


def _reference(store: CorpusStore, checkpoint: Path, ckpt_id: str, tid: str) -> tuple[Reference, pa.Table | None]:
    """The tokens to align a trajectory's rollout to, and the replay's routing rows (None when there is no replay).

    With a replay, its own rendering (the tokens its routing belongs to); without one, the rendering a
    replay with the default settings will use.
    """
    import numpy as np
    import pyarrow.compute as pc

    from horizonlens.model import Reference, render
    from horizonlens.replays import ReplayCache

    cache = ReplayCache(store.root, ckpt_id)
    routing = cache.read_routing(tid) if cache.has(tid, tokens=True) else None
    if routing is not None and routing.num_rows:
        first = routing.filter(pc.equal(routing["layer"], routing["layer"][0]))  # one row per token
        order = np.argsort(first["token_index"].to_numpy())
        return Reference(first["token_id"].to_numpy()[order].astype(np.int64),
                         first["step"].to_numpy()[order].astype(np.int32),
                         np.asarray(first["segment"].to_pylist(), dtype=object)[order].astype(str)), routing
    return Reference.from_rendered(render(_tokenizer(checkpoint), store.steps(tid).to_pylist())), None


@lru_cache(maxsize=2)
def _tokenizer(checkpoint: Path) -> Any:
    from horizonlens.model.loader import load_tokenizer

    return load_tokenizer(checkpoint)


def _tables(aligned: AlignedRollout, shape: RoutingShape, replay_routing: pa.Table | None) -> dict[str, pa.Table]:
    """The rollout's token-tier rows and, with a replay, its comparison tables."""
    from horizonlens.metrics.rollout import compare_aligned

    tables = {"rollout_tokens": _rollout_token_table(aligned, shape)}
    if replay_routing is not None:
        tables.update(compare_aligned(aligned, list(shape.moe_layers), replay_routing))
    return tables


def _rollout_token_table(aligned: AlignedRollout, shape: RoutingShape) -> pa.Table:
    """The `rollout` source of the token tier: the engine's experts on the replay's token positions."""
    import pyarrow as pa

    from horizonlens.replays.codec import token_table

    table = token_table(aligned.trajectory_id, list(shape.moe_layers), aligned.experts, None, None, None,
                        shape.num_experts, steps=aligned.steps, segments=aligned.segments,
                        token_ids=aligned.token_ids, source="rollout")
    # token_table numbers tokens 0..M-1; these tokens sit at the replay's positions
    positions = pa.array(aligned.token_index.repeat(len(shape.moe_layers)), pa.int32())
    return table.set_column(table.schema.get_field_index("token_index"), "token_index", positions)


def compare_stored(store: CorpusStore, ckpt_id: str, trajectory_ids: list[str] | None = None) -> list[str]:
    """Compare stored rollouts with their replays again (replaces older comparisons); returns those compared."""
    from horizonlens.metrics.rollout import compare_stored_rollout
    from horizonlens.replays import ReplayCache

    cache = ReplayCache(store.root, ckpt_id)
    done: list[str] = []

    def batches() -> Iterator[tuple[dict[str, dict[str, pa.Table]], dict[str, dict[str, Any]]]]:
        for tid in trajectory_ids or sorted(cache.rollout_ids()):
            tables = compare_stored_rollout(cache, tid)
            if tables:
                done.append(tid)
                yield {tid: tables}, {}

    if cache.write_rollouts(batches()):
        store.refresh()
    return done


@routing_app.command("import")
def import_cmd(files: Annotated[list[Path], typer.Argument(help="Rollout routing files: JSONL (SGLang or vLLM "
                                                                "records), JSON arrays, or .npz.")],
               into: Annotated[str, typer.Option("--into", help="Corpus directory (or s3://bucket/prefix) holding "
                                                                "the trajectories.")],
               checkpoint: Annotated[Path, typer.Option(help="The checkpoint the rollout engine served.")],
               fmt: Annotated[Optional[str], typer.Option("--format", help="sglang, vllm or npz (default: detected "
                                                                           "from each file's content).")] = None,
               replay: Annotated[bool, typer.Option(help="Replay trajectories that have no replay with token "
                                                         "routing yet, so they can be compared.")] = True) -> None:
    """Import the experts vLLM/SGLang chose during a rollout and compare them with the replay (docs/routing.md)."""
    from horizonlens.query.store import open_store

    store = open_store(into)
    report = import_rollouts(store, checkpoint, files, fmt, replay, log=lambda m: typer.secho(m, err=True))
    for problem in report.problems[:50]:
        typer.secho(f"skipped: {problem}", fg=typer.colors.YELLOW, err=True)
    if len(report.problems) > 50:
        typer.secho(f"... and {len(report.problems) - 50} more problems", fg=typer.colors.YELLOW, err=True)
    for tid, a in report.alignment.items():
        how = "identical token ids" if a["identical"] else f"{a['blocks']} matching blocks"
        typer.echo(f"{tid}: {a['aligned']:,} of {a['routed']:,} routed tokens aligned ({a['aligned_share']:.1%}, "
                   f"{how}); they cover {a['reference_share']:.1%} of the replay's rendering")
    typer.echo(report.summary())
    if not report.imported:
        raise typer.Exit(1)


@routing_app.command("compare")
def compare_cmd(corpus: Annotated[str, typer.Argument(help="Corpus directory or s3://bucket/prefix.")],
                checkpoint: Annotated[Path, typer.Option(help="The checkpoint whose replays and rollouts to compare.")],
                trajectory: Annotated[Optional[list[str]], typer.Option("--trajectory", "-t",
                                                                        help="Trajectory id (repeatable).")] = None
                ) -> None:
    """Compare stored rollout routing with the current replays again (after a replay was redone)."""
    from horizonlens.model import checkpoint_id
    from horizonlens.query.store import open_store

    store = open_store(corpus)
    done = compare_stored(store, checkpoint_id(checkpoint), list(trajectory or []) or None)
    typer.echo(f"compared {len(done)} trajectories" if done else
               "nothing to compare: no trajectory has both a rollout and a replay with token routing")
