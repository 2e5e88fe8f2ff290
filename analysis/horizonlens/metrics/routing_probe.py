"""What routing knows: expert-usage signatures of replayed steps, and probes of what they predict.

A step's **signature** is its expert usage read from the step tier: for each MoE layer, the share of the step's
token→expert assignments that went to each expert (a layer's shares sum to 1). Stacked over layers it is a
vector of L x E numbers, kept sparse (a short step uses few experts). A run's signature is the mean of its
steps' signatures.

The **probe** asks how well a signature predicts a target: the run's `teacher`, its `domain`, or `fail_k` (a
check fails within the next k steps, as in metrics/early_warning.py; steps with no check ahead are left out).
It is a logistic regression (scikit-learn, default L2 penalty) scored by 5-fold cross-validation **grouped by
trajectory** (GroupKFold): no run has steps in both the training and the test fold, so the probe cannot score
by recognising a run. Reported per layer (that layer's E shares) and over all layers, beside the
**majority-class baseline** (each test fold predicted as its training folds' most frequent class). Accuracy is
pooled over the out-of-fold predictions; its 95% interval resamples trajectories (steps of one run are not
independent). At most `max_steps` steps enter a probe: whole trajectories in a fixed pseudo-random order,
and the row says so (`sampled`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from horizonlens.errors import StoreError
from horizonlens.metrics.replays import checkpoint_scope
from horizonlens.metrics.routing import num_experts
from horizonlens.query.store import CorpusStore

TARGETS = ("teacher", "domain", "fail_k")
DEFAULT_K = 3
FOLDS = 5
MIN_STEPS = 20  # fewer replayed steps than this (or fewer runs than folds): no probe, a message instead
MAX_STEPS = 20_000
N_BOOT = 500
PROBE_COLUMNS = ["target", "layer", "accuracy", "baseline", "lower", "upper", "baseline_lower", "baseline_upper", "n",
                 "trajectories", "classes", "sampled"]


@dataclass
class Signatures:
    """Step signatures: `keys` (trajectory_id, step) row by row, `matrix` (steps, L*E) sparse shares."""

    keys: pd.DataFrame
    matrix: Any  # scipy.sparse.csr_matrix, float32
    layers: list[int]
    num_experts: int

    def layer(self, layer: int) -> Any:
        """The columns of one MoE layer (its E shares)."""
        i = self.layers.index(layer)
        return self.matrix[:, i * self.num_experts:(i + 1) * self.num_experts]


def _ordered(ids: list[str]) -> list[str]:
    """Trajectory ids in a fixed pseudo-random order (a hash of the id), stable as the replayed set grows."""
    return sorted(ids, key=lambda t: hashlib.sha1(t.encode()).hexdigest())


def step_signatures(store: CorpusStore, checkpoint_id: str, trajectory_ids: list[str] | None = None,
                    max_steps: int | None = None) -> Signatures:
    """The signatures of the replayed steps of these trajectories (all replayed when None), in (trajectory, step) order.

    With `max_steps`, whole trajectories are taken in a fixed pseudo-random order until the budget is spent.
    """
    from scipy.sparse import csr_matrix

    if "routing_steps" not in store.replay_views:
        return Signatures(pd.DataFrame(columns=["trajectory_id", "step"]), csr_matrix((0, 0), dtype=np.float32), [], 0)
    scope, params = checkpoint_scope(checkpoint_id, trajectory_ids, "r")
    if max_steps is not None:
        counts = store.query(f"SELECT r.trajectory_id, count(DISTINCT r.step) AS n FROM routing_steps r WHERE {scope} "
                             f"GROUP BY 1", params).to_pylist()
        per = {r["trajectory_id"]: int(r["n"]) for r in counts}
        chosen: list[str] = []
        used = 0
        for tid in _ordered(list(per)):
            if chosen and used + per[tid] > max_steps:
                break
            chosen.append(tid)
            used += per[tid]
        if len(chosen) < len(per):
            scope, params = checkpoint_scope(checkpoint_id, sorted(chosen), "r")
    rows = store.query(f"""
      SELECT r.trajectory_id, r.step, r.layer, r.expert,
             r.tokens / sum(r.tokens) OVER (PARTITION BY r.trajectory_id, r.step, r.layer) AS share
      FROM routing_steps r WHERE {scope} AND r.tokens > 0""", params)
    E = num_experts(store, checkpoint_id)
    layer_col = rows.column("layer").to_numpy()
    layers = sorted(int(x) for x in np.unique(layer_col))
    tid = rows.column("trajectory_id").to_numpy(zero_copy_only=False).astype(str)
    step = rows.column("step").to_numpy()
    keys = pd.DataFrame({"trajectory_id": tid, "step": step}).drop_duplicates().sort_values(
        ["trajectory_id", "step"], kind="stable").reset_index(drop=True)
    index = pd.MultiIndex.from_frame(keys)
    row = index.get_indexer(pd.MultiIndex.from_arrays([tid, step]))
    at = {layer: i for i, layer in enumerate(layers)}
    col = np.array([at[int(x)] for x in layer_col], dtype=np.int64) * E + rows.column("expert").to_numpy()
    matrix = csr_matrix((rows.column("share").to_numpy().astype(np.float32), (row, col)),
                        shape=(len(keys), len(layers) * E))
    return Signatures(keys, matrix, layers, E)


def run_signatures(sig: Signatures) -> tuple[pd.DataFrame, Any]:
    """Per trajectory: the mean of its steps' signatures (ids, sparse matrix)."""
    from scipy.sparse import csr_matrix

    ids, inverse = np.unique(sig.keys["trajectory_id"].to_numpy().astype(str), return_inverse=True)
    counts = np.bincount(inverse, minlength=len(ids)).astype(np.float32)
    mean = csr_matrix((1 / counts[inverse], (inverse, np.arange(len(inverse)))), shape=(len(ids), len(inverse)))
    return pd.DataFrame({"trajectory_id": ids}), (mean @ sig.matrix).tocsr()


def step_targets(store: CorpusStore, keys: pd.DataFrame, k: int = DEFAULT_K) -> pd.DataFrame:
    """Per signature row: the run's teacher and domain, the step's source, and fail_k (None: no check ahead)."""
    if not 1 <= int(k) <= 1000:
        raise ValueError("k is a whole number of steps from 1 to 1000")
    ids = sorted(keys["trajectory_id"].unique().tolist())
    if not ids:
        return keys.assign(teacher=None, domain=None, source=None, outcome=None, fail_k=None)
    found = store.query(f"""
      WITH s AS (
        SELECT trajectory_id, step, source,
               count(check_passed) OVER ahead AS checks_ahead,
               count(*) FILTER (WHERE check_passed = false) OVER ahead AS failed_ahead
        FROM steps WHERE list_contains(?, trajectory_id)
        WINDOW ahead AS (PARTITION BY trajectory_id ORDER BY step RANGE BETWEEN 1 FOLLOWING AND {int(k)} FOLLOWING))
      SELECT s.trajectory_id, s.step, s.source, t.teacher, t.domain, t.outcome,
             CASE WHEN s.checks_ahead > 0 THEN CAST(s.failed_ahead > 0 AS VARCHAR) END AS fail_k
      FROM s JOIN trajectories t USING (trajectory_id)""", [ids]).to_pandas()
    return keys.merge(found, on=["trajectory_id", "step"], how="left")


def _bootstrap(correct: np.ndarray, groups: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of pooled accuracy, resampling groups (trajectories) with replacement."""
    ids, inv = np.unique(groups, return_inverse=True)
    hits = np.bincount(inv, weights=correct.astype(float), minlength=len(ids))
    sizes = np.bincount(inv, minlength=len(ids)).astype(float)
    draws = np.random.default_rng(seed).multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=n_boot)
    acc = (draws @ hits) / np.maximum(draws @ sizes, 1)
    lo, hi = np.percentile(acc, [2.5, 97.5])
    return float(lo), float(hi)


def probe_one(X: Any, y: np.ndarray, groups: np.ndarray, folds: int = FOLDS, seed: int = 0,
              n_boot: int = N_BOOT) -> dict[str, Any] | None:
    """Grouped cross-validated logistic regression of y on X beside the majority-class baseline (None: too few)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    n_groups = len(np.unique(groups))
    if len(y) < MIN_STEPS or n_groups < folds or len(np.unique(y)) < 2:
        return None
    predicted = np.empty(len(y), dtype=object)
    majority = np.empty(len(y), dtype=object)
    for train, test in GroupKFold(n_splits=folds).split(X, y, groups):
        values, counts = np.unique(y[train], return_counts=True)
        majority[test] = values[np.argmax(counts)]
        if len(values) < 2:
            predicted[test] = values[0]
            continue
        model = LogisticRegression(max_iter=1000)
        predicted[test] = model.fit(X[train], y[train]).predict(X[test])
    correct = predicted == y
    base = majority == y
    lower, upper = _bootstrap(correct, groups, n_boot, seed)
    b_lower, b_upper = _bootstrap(base, groups, n_boot, seed)
    return {"accuracy": float(correct.mean()), "baseline": float(base.mean()), "lower": lower, "upper": upper,
            "baseline_lower": b_lower, "baseline_upper": b_upper, "n": int(len(y)), "trajectories": n_groups,
            "classes": int(len(np.unique(y)))}


def routing_probe(store: CorpusStore, checkpoint_id: str, trajectory_ids: list[str] | None = None,
                  k: int = DEFAULT_K, targets: tuple[str, ...] = TARGETS, per_layer: bool = True,
                  max_steps: int = MAX_STEPS, seed: int = 0) -> pd.DataFrame:
    """Probe accuracy per target and layer ("all" = every layer's shares together): PROBE_COLUMNS.

    `trajectory_ids`: the runs to use (None: every replayed run). Empty when there are too few replayed steps
    or runs (fewer than MIN_STEPS steps, or fewer runs than folds) for any target; `probe_message` says why.
    """
    for target in targets:
        if target not in TARGETS:
            raise StoreError(f"cannot probe {target!r}; targets are {', '.join(TARGETS)}")
    sig = step_signatures(store, checkpoint_id, trajectory_ids, max_steps)
    total = store.scalar(f"SELECT count(*) FROM (SELECT DISTINCT r.trajectory_id, r.step FROM routing_steps r WHERE "
                         f"{checkpoint_scope(checkpoint_id, trajectory_ids, 'r')[0]})",
                         checkpoint_scope(checkpoint_id, trajectory_ids, "r")[1]) \
        if "routing_steps" in store.replay_views else 0
    sampled = len(sig.keys) < int(total or 0)
    meta = step_targets(store, sig.keys, k)
    rows = []
    for target in targets:
        y = meta[target].to_numpy(dtype=object)
        keep = pd.notna(y)
        if target == "fail_k":
            keep &= (meta["source"] == "agent").to_numpy()  # the steps early warning scores
        X, yk, groups = sig.matrix[keep], y[keep].astype(str), meta["trajectory_id"].to_numpy()[keep]
        scopes: list[tuple[str | int, Any]] = [("all", X)]
        if per_layer:
            E = sig.num_experts
            scopes += [(layer, X[:, i * E:(i + 1) * E]) for i, layer in enumerate(sig.layers)]
        for layer, Xl in scopes:
            found = probe_one(Xl, yk, groups, seed=seed)
            if found is not None:
                rows.append({"target": target, "layer": layer, **found, "sampled": sampled})
    return pd.DataFrame(rows, columns=PROBE_COLUMNS)


def probe_message(store: CorpusStore, checkpoint_id: str, trajectory_ids: list[str] | None = None) -> str | None:
    """Why there is no probe (too few replayed steps or runs), or None when there can be one."""
    if checkpoint_id not in store.replay_checkpoints or "routing_steps" not in store.replay_views:
        return "Nothing has been replayed through this checkpoint, so there is no routing to probe."
    scope, params = checkpoint_scope(checkpoint_id, trajectory_ids, "r")
    row = store.query(f"SELECT count(DISTINCT r.trajectory_id) AS runs, count(DISTINCT (r.trajectory_id, r.step)) "
                      f"AS steps FROM routing_steps r WHERE {scope}", params).to_pylist()[0]
    if row["steps"] < MIN_STEPS or row["runs"] < FOLDS:
        return (f"A probe needs at least {MIN_STEPS} replayed steps from at least {FOLDS} runs (one fold each); "
                f"this selection has {row['steps']} steps from {row['runs']} runs. Replay more trajectories "
                f"(`horizonlens replay CORPUS --sample 60`).")
    return None


def kept_probe(store: CorpusStore, checkpoint_id: str, trajectory_ids: list[str] | None = None,
               k: int = DEFAULT_K, keep: bool = True) -> pd.DataFrame:
    """`routing_probe`, computed once per state of the corpus and of the checkpoint's replays (metrics/results.py)."""
    import pyarrow as pa

    from horizonlens.metrics.results import computed_once, result_key

    versions = dict(store.version)
    state = f"{versions.get('corpus')}|{versions.get(f'replay:{checkpoint_id}')}"
    key = result_key("routing_probe", checkpoint_id, sorted(trajectory_ids) if trajectory_ids else None, int(k), FOLDS,
                     MAX_STEPS)

    def compute() -> tuple[dict[str, pa.Table], dict[str, Any]]:
        frame = routing_probe(store, checkpoint_id, trajectory_ids, k)
        frame["layer"] = frame["layer"].astype(str)
        return {"probe": pa.Table.from_pandas(frame, preserve_index=False)}, {"k": int(k)}

    tables, _ = computed_once(store.root, "routing_probe", key, state, ("probe",), compute, keep=keep)
    out = tables["probe"].to_pandas()
    out["layer"] = [v if v == "all" else int(v) for v in out["layer"]]
    return out
