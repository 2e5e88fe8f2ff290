"""The replay views: what each one shows and the SQL that makes it from one checkpoint's cache tables.

The store unions every checkpoint's SELECTs per view and adds a `checkpoint_id` column (query/mounts.py); a view
no checkpoint contributes to is the same SELECT over an empty table of the stored schema, so its columns never
depend on what was replayed.
"""

from __future__ import annotations

from collections.abc import Callable

from horizonlens.replays.codec import SOURCE_TABLES, aggregate_view_sql, token_view_sql
from horizonlens.replays.layout import COMPARE_TABLES, STEP_TIER, TOKEN_TIER

# view -> what it shows (docs/corpus-format.md has the columns)
REPLAY_VIEWS: dict[str, str] = {
    "replay_steps": "per step of each replayed trajectory: surprisal, top-1 agreement, router entropy",
    "routing": "per (token, MoE layer): the experts the router chose, their weights, margin and entropy (decoded)",
    "routing_steps": "per (trajectory, step, layer, expert): tokens routed and their mean gate weight",
    "routing_segments": "per (trajectory, segment, layer, expert): tokens routed and their mean gate weight",
    "routing_rollout": "per (token, MoE layer): the experts an inference engine chose (imported rollouts)",
    "rollout_compare": "rollout vs replay routing per (trajectory, step, segment, layer)",
    "rollout_compare_steps": "rollout vs replay routing per (trajectory, step, segment), across layers",
}
# (relation key, the files' experts per token or 0) -> a FROM clause scanning one table's files
Relation = Callable[[str, str, int], str]


def replay_selects(tables: dict[str, list[int]], relation: Relation) -> dict[str, list[str]]:
    """Per view, the SELECTs over one checkpoint's tables.

    `tables`: per cache table with files, the experts per token of each group of its files (token tables) or
    [0]; `relation(table, key, top_k)` scans that table's files of that group.
    """
    out: dict[str, list[str]] = {}
    if "steps" in tables:
        out["replay_steps"] = [f"SELECT * FROM {relation('steps', 'steps', 0)}"]
    for view, table in (("routing", TOKEN_TIER), ("routing_rollout", SOURCE_TABLES["rollout"])):
        for k in tables.get(table, []):
            out.setdefault(view, []).append(token_view_sql(relation(table, f"{view}_k{k}", k), k))
    for view, key in zip(STEP_TIER, ("step", "segment"), strict=True):
        if view in tables:
            out[view] = [aggregate_view_sql(relation(view, view, 0), key)]
    for table in COMPARE_TABLES:
        if table in tables:
            out[table] = [f"SELECT * FROM {relation(table, table, 0)}"]
    return out
