"""The sample corpus generator: simulated agents acting in real (simulated) worlds.

Every tool call executes in a domain world (`horizonlens.sample.worlds`). A verifier re-executes the
*intended* call on a copy of the same world state and compares observation and resulting state:
that comparison is each action's check, and a failed check says what was expected and what was given.
Errors come from planted dynamics:

    P(action is wrong) = min(hazard_cap, base[domain] * multiplier[agent, domain] * gamma[agent] ** min(j, j_cap))

where j is the number of failed checks earlier in the trajectory (self-conditioning). Right after
a failed check the agent notices with probability `recovery_rate`, undoes what it did and retries;
otherwise the wrong value flows on and the final answer/state is wrong. Outcome and reward follow
from the world's final state.

Every task is attempted by the same line-up (`Planted.agents_for`): its domain's teacher, the student
checkpoints and a baseline, several trials each, in the same world. So run sets compare on shared tasks,
and the planted differences between agents (a checkpoint that compounds less, one domain a student lost)
are what a paired comparison should find. The planted parameters are written to the manifest.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import pyarrow as pa

from horizonlens.corpus.files import new_manifest, write_corpus
from horizonlens.corpus.schema import STEPS, TRAJECTORIES
from horizonlens.corpus.text import step_tokens_estimate
from horizonlens.derived.search_index import build_index
from horizonlens.sample.text import reasoning_for, repair_reasoning
from horizonlens.sample.world import Call, Environment, Result
from horizonlens.sample.worlds import WORLDS

SOURCE = "horizonlens-sample"
TEACHERS = {"search": "deepsearch-teacher", "engineering": "swe-teacher", "science": "sci-reasoner-teacher",
            "instruction": "ifeval-teacher", "tool_calling": "toolcall-teacher", "general": "generalist-teacher"}
VALUE_CHARS = 60  # an argument value in a check's detail is cut here


@dataclass
class Planted:
    """The error dynamics the generator plants; analytics should recover them."""

    # probability that an action is wrong with no earlier failed check, per domain
    base_error_rate: dict[str, float] = field(default_factory=lambda: {
        "search": 0.030, "engineering": 0.045, "science": 0.035,
        "instruction": 0.025, "tool_calling": 0.040, "general": 0.030})
    # per-agent multiplier on the base rate (weaker agents err more); every domain teacher has the same one
    agent_multiplier: dict[str, float] = field(default_factory=lambda: {
        **{teacher: 0.6 for teacher in TEACHERS.values()},
        "a1-student-ckpt-2k": 1.0, "a1-student-ckpt-4k": 0.75, "dense-7b-baseline": 1.6})
    # per-agent, per-domain multipliers that replace the agent's own there: the later checkpoint lost the
    # software-engineering skill its teacher gave it (it errs more than the earlier checkpoint in that domain)
    domain_multiplier: dict[str, dict[str, float]] = field(default_factory=lambda: {
        "a1-student-ckpt-4k": {"engineering": 1.8}})
    self_conditioning: float = 1.6  # gamma: hazard multiplier per earlier failed check
    # agents whose gamma differs: the later checkpoint barely conditions on its own mistakes, so its lead over
    # the earlier one grows with the horizon (long tasks have more chances for a first mistake to compound)
    agent_self_conditioning: dict[str, float] = field(default_factory=lambda: {"a1-student-ckpt-4k": 1.1})
    # the agents that attempt every task, besides the task's domain teacher
    students: tuple[str, ...] = ("a1-student-ckpt-2k", "a1-student-ckpt-4k")
    baseline: str = "dense-7b-baseline"
    conditioning_cap: int = 3  # j is capped here, so the hazard stops growing after 3 failures
    hazard_cap: float = 0.6
    recovery_rate: float = 0.55  # P(agent notices a failed check at once and repairs it)
    max_retries: int = 3
    # goals per task: lognormal(median, sigma) clipped to [1, max_goals]
    goals_median: dict[str, float] = field(default_factory=lambda: {
        "search": 9, "engineering": 6, "science": 6, "instruction": 7, "tool_calling": 5, "general": 6})
    goals_sigma: float = 1.1
    max_goals: int = 160
    # a share of tasks are long-horizon: goals uniform in [long_goals_min, max_goals]
    long_share: float = 0.04
    long_goals_min: int = 60

    def agents_for(self, domain: str) -> list[str]:
        """The agents that attempt a task of `domain`: its teacher, the students, the baseline."""
        return [TEACHERS[domain], *self.students, self.baseline]

    def base_rate(self, domain: str, agent: str) -> float:
        """P(an action is wrong) with no earlier failed check: the domain's rate times the agent's multiplier."""
        multiplier = self.domain_multiplier.get(agent, {}).get(domain, self.agent_multiplier[agent])
        return self.base_error_rate[domain] * multiplier

    def gamma(self, agent: str) -> float:
        """The agent's self-conditioning: its hazard multiplier per earlier failed check."""
        return self.agent_self_conditioning.get(agent, self.self_conditioning)

    def hazard(self, domain: str, agent: str, failed_before: int) -> float:
        """P(the next action is wrong), given how many checks already failed in this trajectory.

        The agent's base rate in the domain, times its gamma per earlier failed check (counting at most
        `conditioning_cap` of them), capped at `hazard_cap`.
        """
        rate = self.base_rate(domain, agent)
        return min(self.hazard_cap, rate * self.gamma(agent) ** min(failed_before, self.conditioning_cap))


PRICE_PER_1K = {**{teacher: 0.002 for teacher in TEACHERS.values()}, "a1-student-ckpt-2k": 0.0006,
                "a1-student-ckpt-4k": 0.0006, "dense-7b-baseline": 0.0003}
EPOCH = datetime(2026, 6, 1, tzinfo=timezone.utc)


@dataclass
class StepRecord:
    """One step as the generator builds it, before it becomes a Parquet row."""

    source: str
    reasoning: str | None = None
    message: str | None = None
    call: Call | None = None
    call_id: str | None = None
    observation: str | None = None
    knowledge: str | None = None
    check_passed: bool | None = None
    check_detail: str | None = None
    error_label: str | None = None
    repaired: bool = False


class Episode:
    """One trial of one agent on one task: drives the agent through the world's subgoals."""

    def __init__(self, env: Environment, agent: str, planted: Planted, rng: random.Random):
        self.env, self.agent, self.planted, self.rng = env, agent, planted, rng
        self.steps: list[StepRecord] = [StepRecord("system", message=env.system_prompt()),
                                        StepRecord("user", message=env.instruction)]
        self.failed = 0
        self.calls = 0

    def _act(self, intended: Call, reasoning: str, knowledge: str | None,
             corruptible: bool = True) -> tuple[Result, StepRecord]:
        """Execute one (possibly wrong) action and check it against the intended one."""
        wrong = corruptible and self.rng.random() < self.planted.hazard(self.env.domain, self.agent, self.failed)
        call, label = self.env.corrupt(intended, self.rng) if wrong else (intended, None)
        ref_result, ref_state = self.env.reference(intended)
        result = self.env.execute(call)
        passed = result.text == ref_result.text and self.env.state_fingerprint() == ref_state
        self.calls += 1
        detail = "matches the verifier's reference execution" if passed else _mismatch(call, intended, result, label)
        record = StepRecord("agent", reasoning=reasoning, call=call, call_id=f"call_{self.calls:04d}",
                            observation=result.text, knowledge=knowledge, check_passed=passed,
                            check_detail=detail, error_label=None if passed else (label or "tool_error"))
        self.steps.append(record)
        if not passed:
            self.failed += 1
        return result, record

    def run(self) -> float:
        """Play the episode: every subgoal's chain of calls, retries and repairs, then the final call.

        Returns the reward of the final state (1.0 = success).
        """
        beliefs: dict[str, Any] = {}
        for n, goal in enumerate(self.env.subgoals):
            values: list[Any] = []
            knowledge = _knowledge(self.env, beliefs, n)
            for i, build in enumerate(goal.builders):
                if i > 0 and values[-1] is None:
                    self.steps.append(StepRecord("agent", reasoning=f"The last call gave me nothing usable to "
                                                 f"{goal.intent}; I will move on to the next item."))
                    break
                intended = build(values)
                result, record = self._act(intended, reasoning_for(self.env, goal, intended, i, self.rng), knowledge)
                knowledge = None
                tries = 0
                while not record.check_passed and tries < self.planted.max_retries \
                        and self.rng.random() < self.planted.recovery_rate:
                    tries += 1
                    for undo in self.env.repair_calls(record.call, intended, result):  # type: ignore[arg-type]
                        self._act(undo, repair_reasoning(record.observation, record.call, undo), None,
                                  corruptible=False)
                    previous = record
                    words = repair_reasoning(previous.observation, previous.call, intended)
                    result, record = self._act(intended, words, None)
                    previous.repaired = record.check_passed is True
                values.append(result.value)
            beliefs[goal.key] = values[-1] if values else None
        final_call = self.env.final_call(beliefs)
        final = self.env.execute(final_call)
        self.calls += 1
        self.steps.append(StepRecord("agent", reasoning="All items are done; wrapping up and reporting the result.",
                                     message=_final_message(final_call, final), call=final_call,
                                     call_id=f"call_{self.calls:04d}", observation=final.text))
        return self.env.reward(final)


def _knowledge(env: Environment, beliefs: dict[str, Any], n: int) -> str | None:
    """Retrieved context the agent carries into a subgoal (its notes so far), every few subgoals."""
    if n == 0 or n % 4:
        return None
    recent = list(beliefs.items())[-4:]
    lines = [f"- {k}: {v}" for k, v in recent]
    return f"Notes so far ({len(beliefs)} of {len(env.subgoals)} items done):\n" + "\n".join(lines)


def _value(value: Any) -> str:
    """An argument value as a check's detail shows it: as written, cut at VALUE_CHARS."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS] + "…"


def _mismatch(call: Call, intended: Call, result: Result, label: str | None) -> str:
    """What the verifier expected and what the agent gave: "wrong_flight: expected flight_id HL401, given HL116"."""
    if call.name != intended.name:
        what = f"expected call {intended.name}, given {call.name}"
    else:
        keys = [k for k in {**intended.args, **call.args} if call.args.get(k) != intended.args.get(k)]
        what = "; ".join(f"expected {k} {_value(intended.args.get(k))}, given {_value(call.args.get(k))}"
                         for k in keys) or "the same call, with a different result from the verifier's reference"
    detail = f"{label or 'tool_error'}: {what}"
    if result.error:
        detail += f"; the tool returned an error: {result.text[:120]}"
    return detail


def _final_message(call: Call, result: Result) -> str:
    if "answer" in call.args:
        return f"Final answer: {call.args['answer']}"
    return f"Done. {result.text.splitlines()[-1][:200]}"


# ----------------------------------------------------------------------------------------------
@dataclass
class TaskSpec:
    """One task of the sample corpus: its world (domain, seed, number of goals), attempted by every agent."""

    task_id: str
    domain: str
    n_goals: int
    world_seed: int


def plan_tasks(n_trajectories: int, trials: int, seed: int, planted: Planted) -> list[TaskSpec]:
    """The tasks of a corpus, domains in rotation, goal counts drawn from the planted horizon distribution."""
    rng = random.Random(seed)
    domains = list(WORLDS)
    per_task = trials * len(planted.agents_for(domains[0]))
    tasks = []
    for t in range(math.ceil(n_trajectories / per_task)):
        domain = domains[t % len(domains)]
        median = planted.goals_median[domain]
        drawn = round(math.exp(rng.gauss(math.log(median), planted.goals_sigma)))
        n_goals = int(min(planted.max_goals, max(1, drawn)))
        if rng.random() < planted.long_share:
            n_goals = rng.randint(planted.long_goals_min, planted.max_goals)
        tasks.append(TaskSpec(f"{domain}-{t:05d}", domain, n_goals, rng.getrandbits(32)))
    return tasks


def generate_rows(n_trajectories: int, seed: int = 0, trials: int = 3, planted: Planted | None = None,
                  progress: Callable[[int], None] | None = None,
                  ) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Yield (trajectory row, step rows) for each simulated trajectory, deterministically.

    Task by task: every agent of the task's line-up, `trials` times each, in the same world.
    """
    planted = planted or Planted()
    made = 0
    for spec in plan_tasks(n_trajectories, trials, seed, planted):
        for agent in planted.agents_for(spec.domain):
            for trial in range(trials):
                if made >= n_trajectories:
                    return
                env = WORLDS[spec.domain](random.Random(spec.world_seed), spec.n_goals)
                agent_rng = random.Random(f"{seed}-{spec.world_seed}-{agent}-{trial}")
                episode = Episode(env, agent, planted, agent_rng)
                reward = episode.run()
                # the baseline was not distilled from a teacher; students and teachers carry the domain's teacher
                teacher = None if agent == planted.baseline else TEACHERS[spec.domain]
                yield _rows(spec, agent, teacher, trial, episode, reward, agent_rng)
                made += 1
                if progress:
                    progress(1)


def _rows(spec: TaskSpec, agent: str, teacher: str | None, trial: int, ep: Episode, reward: float,
          rng: random.Random) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    tid = f"{spec.task_id}-{agent}-t{trial}"
    start = EPOCH + timedelta(seconds=rng.uniform(0, 90 * 86400))
    t = start
    rows: list[dict[str, Any]] = []
    outcome = "success" if reward >= 1.0 else "failure"
    unrepaired = [i for i, s in enumerate(ep.steps) if s.check_passed is False and not s.repaired]
    decisive = unrepaired[0] if outcome == "failure" and unrepaired else None
    price = PRICE_PER_1K[agent] / 1000
    for i, s in enumerate(ep.steps):
        calls = [{"id": s.call_id, "name": s.call.name, "arguments": s.call.arguments_json()}] if s.call else []
        observations = [{"call_id": s.call_id, "content": s.observation}] if s.observation is not None else []
        n_tokens = step_tokens_estimate({"reasoning": s.reasoning, "message": s.message, "knowledge": s.knowledge,
                                         "tool_calls": calls, "observations": observations})
        if s.source == "agent":
            duration = 0.4 + n_tokens * 0.012 * rng.lognormvariate(0, 0.3) + (rng.expovariate(2.0) if s.call else 0)
            cost = n_tokens * price
        else:
            duration, cost = 0.0, 0.0
        rows.append({
            "trajectory_id": tid, "step": i, "source": s.source, "reasoning": s.reasoning, "message": s.message,
            "tool_calls": calls, "observations": observations,
            "knowledge": s.knowledge, "check_passed": s.check_passed, "check_detail": s.check_detail,
            "error_label": s.error_label,
            "is_decisive_error": (i == decisive) if outcome == "failure" and s.source == "agent" else None,
            "label_source": "verifier" if s.check_passed is not None else None,
            "n_tokens": n_tokens, "started_at": t, "duration_s": round(duration, 3), "cost_usd": cost,
        })
        t += timedelta(seconds=duration)
    failed = [r["step"] for r in rows if r["check_passed"] is False]
    traj = {
        "trajectory_id": tid, "task_id": spec.task_id, "trial": trial, "source": SOURCE, "domain": spec.domain,
        "agent": agent, "teacher": teacher, "task": ep.env.instruction, "outcome": outcome,
        "reward": round(reward, 4), "n_steps": len(rows), "n_tokens": sum(r["n_tokens"] for r in rows),
        "n_failed_checks": len(failed), "first_failed_step": failed[0] if failed else None, "started_at": start,
        "duration_s": round((t - start).total_seconds(), 3), "cost_usd": sum(r["cost_usd"] for r in rows),
        "metadata": json.dumps({"n_goals": spec.n_goals, "decisive_step": decisive, "world_seed": spec.world_seed}),
    }
    return traj, rows


def generate_corpus(out: str, n_trajectories: int, seed: int = 0, trials: int = 3, overwrite: bool = False,
                    progress: Callable[[int], None] | None = None, planted: Planted | None = None) -> dict[str, Any]:
    """Generate a sample corpus directory (with its word index) and return its manifest."""
    planted = planted or Planted()
    trajs: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    for traj, rows in generate_rows(n_trajectories, seed, trials, planted, progress):
        trajs.append(traj)
        steps.extend(rows)
    manifest = new_manifest([SOURCE], generator={"seed": seed, "trajectories": n_trajectories, "trials": trials},
                            planted=asdict(planted))
    # created_at is fixed so the same seed gives byte-identical files
    manifest["created_at"] = EPOCH.isoformat()
    # a fixed dataset id and file tag, from the seed: the same seed gives byte-identical files
    seed_hex = hashlib.sha256(f"horizonlens-sample:{seed}:{n_trajectories}:{trials}".encode()).hexdigest()
    manifest["dataset_id"] = seed_hex[:32]
    write_corpus(out, pa.Table.from_pylist(trajs, schema=TRAJECTORIES), pa.Table.from_pylist(steps, schema=STEPS),
                 manifest, overwrite=overwrite, tag=seed_hex[32:44])
    build_index(out)
    return manifest
