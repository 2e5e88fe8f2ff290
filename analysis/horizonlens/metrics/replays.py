"""Reading one trajectory's cached replay back for display: per-step rows and per-token routing."""

from __future__ import annotations

from typing import Any

import pandas as pd

from horizonlens.query.store import CorpusStore
from horizonlens.replays.cache import ReplayCache


def checkpoint_scope(checkpoint_id: str, trajectory_ids: list[str] | None, alias: str) -> tuple[str, list[Any]]:
    """SQL condition (and its parameters) selecting one checkpoint's rows of a replay view, optionally some runs."""
    sql, params = f"{alias}.checkpoint_id = ?", [checkpoint_id]
    if trajectory_ids:
        sql += f" AND {alias}.trajectory_id IN ({', '.join('?' for _ in trajectory_ids)})"
        params += list(trajectory_ids)
    return sql, params

def replay_steps(store: CorpusStore, checkpoint_id: str, trajectory_id: str) -> pd.DataFrame:
    """The cached per-step replay rows of one trajectory (empty if not replayed)."""
    return store.query("SELECT * EXCLUDE (checkpoint_id) FROM replay_steps WHERE checkpoint_id = ? "
                       "AND trajectory_id = ? ORDER BY step", [checkpoint_id, trajectory_id]).to_pandas()


def replay_notes(store: CorpusStore, checkpoint_id: str, trajectory_id: str) -> dict[str, str]:
    """What the replay of one trajectory noted (truncation, cut fields, template); empty if nothing."""
    return ReplayCache(store.root, checkpoint_id).read_notes(trajectory_id)


def step_routing(store: CorpusStore, checkpoint_id: str, trajectory_id: str, step: int) -> pd.DataFrame:
    """Routing rows (token × layer) of one step, from the token tier (empty if the replay stored only steps).

    `experts` lists the top-1 (largest gate weight) first, then by decreasing weight; `weights` follow it,
    quantized (docs/corpus-format.md). At 40 layers x 256 experts a step has thousands of these rows: a
    view of the step's expert load reads `routing.step_layer_load` instead.
    """
    return store.query("SELECT token_index, token_id, segment, layer, experts, weights, entropy FROM routing "
                       "WHERE checkpoint_id = ? AND trajectory_id = ? AND step = ? ORDER BY token_index, layer",
                       [checkpoint_id, trajectory_id, int(step)]).to_pandas()


def step_tokens(routing: pd.DataFrame, tokenizer: Any) -> pd.DataFrame:
    """The distinct tokens of a step's routing rows with readable text (byte-level pieces decoded)."""
    if routing.empty:
        return pd.DataFrame(columns=["token_index", "token_id", "segment", "text"])
    tokens = routing.drop_duplicates("token_index")[["token_index", "token_id", "segment"]].reset_index(drop=True)
    tokens["text"] = [tokenizer.decode([int(t)]) for t in tokens["token_id"]]
    return tokens


def step_token_surprisal(store: CorpusStore, checkpoint_id: str, trajectory_id: str, step: int) -> pd.DataFrame:
    """Per-token surprisal of one step: token_index, surprisal (nats), top1, scored (empty if the replay has none).

    Replays stored before per-token surprisal was kept have only the per-step means: empty here.
    """
    table = ReplayCache(store.root, checkpoint_id).read_token_surprisal(trajectory_id, int(step))
    if table is None:
        return pd.DataFrame(columns=["token_index", "surprisal", "top1", "scored"])
    out = table.select(["token_index", "surprisal", "top1", "scored"]).to_pandas()
    out["surprisal"] = out["surprisal"].astype("float64")
    return out


def replayed_trajectories(store: CorpusStore, checkpoint_id: str) -> list[str]:
    """Ids of the trajectories with cached replays through this checkpoint, sorted."""
    return store.query("SELECT DISTINCT trajectory_id FROM replay_steps WHERE checkpoint_id = ? ORDER BY 1",
                       [checkpoint_id]).column(0).to_pylist()


def moe_layers(store: CorpusStore, checkpoint_id: str) -> list[int]:
    """The MoE layers whose routing the cached replays of this checkpoint recorded, in order (step tier)."""
    return store.query("SELECT DISTINCT layer FROM routing_steps WHERE checkpoint_id = ? ORDER BY 1",
                       [checkpoint_id]).column(0).to_pylist()


def has_token_routing(store: CorpusStore, checkpoint_id: str, trajectory_id: str) -> bool:
    """Whether this trajectory's replay stored its token tier (`--routing tokens`), so token views can show it.

    Answered from the cache's manifest: a scan of the token tier for one row still visits every row group of the run.
    """
    return ReplayCache(store.root, checkpoint_id).has(trajectory_id, tokens=True)



def shared_trajectories(store: CorpusStore, checkpoint_a: str, checkpoint_b: str) -> list[str]:
    """Trajectories replayed by both checkpoints (for routing agreement)."""
    return sorted(set(replayed_trajectories(store, checkpoint_a)) & set(replayed_trajectories(store, checkpoint_b)))


def step_token_window(store: CorpusStore, checkpoint_id: str, trajectory_id: str, step: int, start: int,
                      count: int) -> pd.DataFrame:
    """Routing rows (token × layer) of `count` tokens of one step, from its `start`-th token (0-based) on.

    The token view's window: only these tokens' rows are read and sent to the browser, so a step of a
    45k-token trajectory with thousands of tokens is paged, never held whole. Same columns as `step_routing`.
    """
    scope = "checkpoint_id = ? AND trajectory_id = ? AND step = ?"
    params: list[Any] = [checkpoint_id, trajectory_id, int(step)]
    return store.query(f"""
      SELECT token_index, token_id, segment, layer, experts, weights, entropy FROM routing
      WHERE {scope} AND token_index IN (SELECT DISTINCT token_index FROM routing WHERE {scope}
                                        ORDER BY token_index LIMIT ? OFFSET ?)
      ORDER BY token_index, layer""", [*params, *params, max(0, int(count)), max(0, int(start))]).to_pandas()
