"""A corpus with planted paired effects: two agents on the same tasks, for the run-set comparison tests.

Every task is run by agent "old" and agent "new" (and a few tasks by "old" only). Per trial, "old" succeeds with
probability 0.45 and "new" with 0.75 (the planted pass-rate difference is +0.30); "new" also fails its first
check later (a lower per-step hazard), which the log-rank test must see. Each run's actions follow a shared
script up to a step drawn per run, then deviate, so the first divergence of any two runs is known by
construction and by `metrics.compare.align`. One run per task writes its arguments with the keys in another
order: the same action, which must not count as a divergence.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.support.corpora import make_corpus, step_row, traj_row

DOMAINS = ("search", "engineering", "science")
P_SUCCESS = {"old": 0.45, "new": 0.75}
HAZARD = {"old": 0.10, "new": 0.04}  # per-step chance that a step's check fails (until the first failure)


def _run(rng: random.Random, tid: str, task: str, agent: str, trial: int, domain: str, n_steps: int
         ) -> tuple[dict, list[dict]]:
    success = rng.random() < P_SUCCESS[agent]
    deviate_at = rng.randint(2, n_steps)  # the run follows the shared script before this step
    first_fail = next((i for i in range(1, n_steps) if rng.random() < HAZARD[agent]), None)
    steps = [step_row(tid, 0, "user", None, message=f"do {task}")]
    for i in range(1, n_steps):
        args = {"i": i, "v": 0 if i < deviate_at else f"{agent}-{trial}-{i}"}
        text = json.dumps(args if trial != 1 else dict(reversed(list(args.items()))))  # same action, keys reordered
        steps.append(step_row(tid, i, check=i != first_fail, tool_calls=[{"id": f"c{i}", "name": "act",
                                                                            "arguments": text}]))
    row = traj_row(tid, n_steps, outcome="success" if success else "failure", task_id=task, trial=trial,
                   agent=agent, domain=domain, teacher=f"{domain}-teacher", n_failed_checks=int(first_fail is not None),
                   first_failed_step=first_fail)
    return row, steps


def paired_corpus(root: Path, tasks: int = 64, trials: int = 4, seed: int = 3, only_old: int = 4) -> Path:
    """Write the planted corpus: `tasks` tasks run by both agents, `only_old` more run by "old" only."""
    rng = random.Random(seed)
    trajs: list[dict] = []
    steps: list[dict] = []
    for t in range(tasks + only_old):
        domain = DOMAINS[t % len(DOMAINS)] if t < tasks - 5 else "general"  # "general": 5 tasks, too few to test
        task = f"task-{t:03d}"
        n_steps = rng.randint(6, 40)
        for agent in ("old", "new") if t < tasks else ("old",):
            for trial in range(trials):
                row, rows = _run(rng, f"{task}-{agent}-t{trial}", task, agent, trial, domain, n_steps)
                trajs.append(row)
                steps += rows
    return make_corpus(root, trajs, steps)
