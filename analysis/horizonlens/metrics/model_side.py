"""Model-side signals from replays: surprisal and router entropy along the horizon and around failures."""

from __future__ import annotations

import pandas as pd

from horizonlens.metrics.replays import checkpoint_scope
from horizonlens.query.store import CorpusStore


def signals_by_step(store: CorpusStore, checkpoint_id: str, trajectory_id: str | None = None,
                    bucket: int = 1) -> pd.DataFrame:
    """Mean surprisal, top-1 agreement and router entropy of agent steps by step index (bucketed)."""
    params: list = [checkpoint_id]
    extra = ""
    if trajectory_id:
        extra = " AND r.trajectory_id = ?"
        params.append(trajectory_id)
    return store.query(f"""
      SELECT (r.step // ?) * ? AS step, count(*) AS steps, avg(r.surprisal) AS surprisal,
             avg(r.top1_agreement) AS top1_agreement, avg(r.entropy) AS entropy,
             avg(CAST(s.check_passed = false AS DOUBLE)) AS failed_share
      FROM replay_steps r JOIN steps s ON s.trajectory_id = r.trajectory_id AND s.step = r.step
      WHERE r.checkpoint_id = ? AND s.source = 'agent' AND r.surprisal IS NOT NULL{extra}
      GROUP BY ALL ORDER BY step""", [bucket, bucket, *params]).to_pandas()


def around_failures(store: CorpusStore, checkpoint_id: str, window: int = 3,
                    trajectory_ids: list[str] | None = None) -> pd.DataFrame:
    """Event-aligned profile: mean surprisal and entropy at agent steps k = −window..window around each check.

    Failed checks beside passed ones: a surprise spike at k = 0 of failed checks means the model 'knew'.
    `trajectory_ids`: only these replayed runs (metrics/replay_set.py), else all.
    """
    scope, params = checkpoint_scope(checkpoint_id, trajectory_ids, "r")
    return store.query(f"""
      WITH a AS (
        SELECT r.trajectory_id, r.surprisal, r.entropy, s.check_passed,
               row_number() OVER (PARTITION BY r.trajectory_id ORDER BY r.step) AS pos
        FROM replay_steps r JOIN steps s ON s.trajectory_id = r.trajectory_id AND s.step = r.step
        WHERE {scope} AND s.source = 'agent' AND r.surprisal IS NOT NULL),
      anchors AS (SELECT trajectory_id, pos,
                         CASE WHEN check_passed THEN 'passed check' ELSE 'failed check' END AS anchor
                  FROM a WHERE check_passed IS NOT NULL)
      SELECT anchors.anchor, a.pos - anchors.pos AS step_offset, count(*) AS n, avg(a.surprisal) AS surprisal,
             avg(a.entropy) AS entropy
      FROM anchors JOIN a ON a.trajectory_id = anchors.trajectory_id AND abs(a.pos - anchors.pos) <= ?
      GROUP BY ALL ORDER BY anchor, step_offset""", [*params, window]).to_pandas()
