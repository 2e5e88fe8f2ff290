"""Run sets: any selection of trajectories, by facet values or by a SQL predicate, as SQL conditions.

A run set is what a user compares: a model, a teacher, a checkpoint, a source, the runs with a label, or any
predicate over the columns of `trajectories` (`agent = 'ckpt-4k' AND domain <> 'search'`). A predicate is
typed by a user, so it passes the SQL console's gate (`query/console.py`: bounded text, one read-only SELECT
on a locked connection) and then a narrower one: it must be a boolean expression over the columns of one
trajectory, with no subquery, parameter, window or comment. Besides the columns of `trajectories` it may use
`labels`, the current label names of the run (`list_contains(labels, 'wrong_flight')`).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from horizonlens.errors import SqlError, StoreError
from horizonlens.query.console import check_limits, check_read_only
from horizonlens.query.filters import TrajectoryFilter
from horizonlens.query.store import CorpusStore
from horizonlens.storage.location import redact

# The facets a run set can be picked by in the app (each a TrajectoryFilter field) and how they read.
FACETS = {"agent": "agents", "teacher": "teachers", "source": "sources", "domain": "domains", "label": "labels"}
PREDICATE_TIMEOUT_S = 60.0  # a comparison's queries (with a user's predicate inside) are stopped after this
# The relation run sets select from: every trajectory column, plus the run's current label names.
RUNS_RELATION = ("(SELECT t.*, coalesce(l.labels, []) AS labels FROM trajectories t LEFT JOIN "
                 "(SELECT a.trajectory_id, list(DISTINCT a.label ORDER BY a.label) AS labels FROM annotations a "
                 "GROUP BY a.trajectory_id) l ON l.trajectory_id = t.trajectory_id)")
_REFUSED = {"SUBQUERY": "a subquery", "PARAMETER": "a parameter", "WINDOW": "a window function",
            "STAR": "a star expression", "DEFAULT": "DEFAULT"}


@dataclass(frozen=True)
class RunSet:
    """A selection of trajectories: facet values (`filter`), a SQL predicate, or both (all must hold).

    `name` is how the set is labelled in tables, charts and the report (the predicate itself by default).
    """

    name: str
    filter: TrajectoryFilter = field(default_factory=TrajectoryFilter)
    predicate: str | None = None

    @classmethod
    def of_predicate(cls, predicate: str, name: str | None = None) -> RunSet:
        """A run set given by a SQL predicate over `trajectories` (checked when it is first used)."""
        return cls(name=name or " ".join(predicate.split())[:80], predicate=predicate)

    @classmethod
    def of_facet(cls, facet: str, value: str) -> RunSet:
        """The runs whose `facet` (agent, teacher, source, domain, label) is `value`."""
        if facet not in FACETS:
            raise StoreError(f"cannot pick runs by {facet!r}; choose one of {', '.join(FACETS)}")
        flt = TrajectoryFilter()
        setattr(flt, FACETS[facet], [value])
        return cls(name=f"{facet} = {value}", filter=flt)


def _walk(node: Any) -> list[str]:
    """The expression classes found anywhere in a serialized expression tree."""
    found: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("class"), str):
                found.append(item["class"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def check_predicate(store: CorpusStore, predicate: str) -> str:
    """The predicate, stripped, if it is a read-only boolean expression over one trajectory; SqlError otherwise."""
    lexed = check_limits(predicate)  # the console's bounds: length, tokens, nesting, NUL, valid text
    for kind, text in zip(lexed.kinds, lexed.texts, strict=True):
        if kind == "comment":
            raise SqlError("a run-set predicate cannot contain a comment")
        if text == ";":
            raise SqlError("a run-set predicate is one expression (no ';')")
    text = predicate.strip()
    probe = f"SELECT count(*) FROM trajectories WHERE ({text})"
    cur = store.cursor()
    try:
        check_read_only(cur, probe)
        tree = json.loads(cur.execute("SELECT json_serialize_sql(?)", [probe]).fetchone()[0])  # type: ignore[index]
        _check_tree(tree)
        # bound as a filter too: an aggregate (count(*) > 1) binds as a select item but never in WHERE
        types = cur.sql(f"SELECT ({text}) AS keep, t.trajectory_id FROM {RUNS_RELATION} t WHERE ({text}) LIMIT 0"
                        ).types
    except duckdb.Error as exc:
        raise SqlError(redact(f"the predicate does not fit the columns of trajectories: {exc}")) from None
    finally:
        cur.close()
    if str(types[0]) not in ("BOOLEAN", '"NULL"', "NULL"):
        raise SqlError(f"a run-set predicate must be true or false for each run; this one is {types[0]}")
    return text


def _check_tree(tree: dict[str, Any]) -> None:
    """The parsed probe is exactly `SELECT count(*) FROM trajectories WHERE (<expression>)`."""
    if tree.get("error"):
        raise SqlError(f"could not parse the predicate: {tree.get('error_message', 'syntax error')}")
    statements = tree.get("statements") or []
    node = statements[0].get("node", {}) if len(statements) == 1 else {}
    source = node.get("from_table") or {}
    shaped = (node.get("type") == "SELECT_NODE" and len(node.get("select_list") or []) == 1
              and source.get("type") == "BASE_TABLE" and source.get("table_name") == "trajectories"
              and not node.get("modifiers") and not (node.get("cte_map") or {}).get("map")
              and not node.get("group_expressions") and node.get("having") is None
              and node.get("qualify") is None and node.get("sample") is None and node.get("where_clause"))
    if not shaped:  # e.g. "x) UNION SELECT ... (": the text escaped its parentheses
        raise SqlError("a run-set predicate must be one boolean expression over the columns of trajectories")
    for kind in _walk(node["where_clause"]):
        if kind in _REFUSED:
            raise SqlError(f"a run-set predicate cannot contain {_REFUSED[kind]}; it is an expression over the "
                           "columns of one trajectory (labels: list_contains(labels, 'name'))")


def runs_relation(*runsets: RunSet) -> str:
    """What run sets select from (as `t`): `trajectories`, with each run's labels when a predicate may use them.

    The labels join costs a scan of the labels, so it is left out when no predicate mentions them.
    """
    return RUNS_RELATION if any("labels" in (r.predicate or "").lower() for r in runsets) else "trajectories"


def runset_clauses(store: CorpusStore, runset: RunSet) -> tuple[list[str], list[Any]]:
    """SQL conditions over `RUNS_RELATION t` selecting the run set, and their parameters."""
    clauses, params = store.filter_clauses(runset.filter)
    if runset.predicate is not None:
        clauses = [*clauses, f"({check_predicate(store, runset.predicate)})"]
    return clauses, params


def timed_query(store: CorpusStore, sql: str, params: list[Any], timeout_s: float = PREDICATE_TIMEOUT_S,
                tables: dict[str, pa.Table] | None = None) -> pa.Table:
    """A query carrying a user's predicate, stopped after `timeout_s` (a regex can take any time).

    `tables` are Arrow tables the query reads by name, registered on its own cursor only.
    """
    cur = store.cursor()
    for name, table in (tables or {}).items():
        cur.register(name, table)
    timer = threading.Timer(timeout_s, cur.interrupt)
    timer.daemon = True
    timer.start()
    try:
        return cur.sql(sql, params=params or None).to_arrow_table()
    except duckdb.InterruptException:
        raise SqlError(f"the comparison ran longer than {timeout_s:g} s and was stopped") from None
    except duckdb.Error as exc:
        raise StoreError(redact(f"query failed: {exc}")) from None
    finally:
        timer.cancel()
        cur.close()
