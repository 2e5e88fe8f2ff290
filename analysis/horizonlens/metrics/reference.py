"""Why a run ended as it did: what its source expected, set beside what the agent did.

Some sources record the reference a run is scored against:

- τ-bench keeps the task's expected actions (`reward_info.actions`, tool name and keyword arguments): its reward
  replays them on a fresh database and compares the result with the database after the run (`r_actions`); some
  tasks also list outputs the agent must say (`reward_info.info.outputs`, `r_outputs`);
- a corpus writer may store `expected_actions` (a list of `{"name", "arguments"}`) in a run's metadata
  (docs/corpus-format.md);
- SWE-bench-style harnesses report which tests were expected to pass and which did (`tests_status`).

`align_actions` sets the expected actions beside the run's tool calls: *matched* (same tool, same arguments),
*wrong arguments* (same tool, the closest call, each differing argument with both values), *missing* (never
called) and *extra* (called, not expected). Arguments the reference does not name are listed as differences
but do not make a call wrong: the reference does not constrain them (τ-bench's tools ignore them). The *first
divergence* is the earliest step where the run leaves the reference in a way that can change its outcome: a
call with wrong arguments, an extra call, or the step before which a missing action was due, of a tool that can
change state (a source may name tools that cannot, such as τ-bench's readers). Everything here is a pure
function of the run's metadata and steps.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from horizonlens.corpus.actions import ABSENT, Difference, differences, parse_arguments, show_value
from horizonlens.query.store import CorpusStore

MATCHED, WRONG_ARGUMENTS, MISSING, EXTRA = "matched", "wrong arguments", "missing", "extra"
STATUSES = (MATCHED, WRONG_ARGUMENTS, MISSING, EXTRA)
# τ-bench's tools (airline and retail) that leave the database as it is: the readers, and the hand-over to a
# human. The reward compares databases, so a call to one of these that differs from the reference is listed
# but is not a divergence.
TAU_BENCH_NO_WRITE = ("get_", "find_", "search_", "list_", "calculate", "think", "transfer_to_human_agents")


@dataclass(frozen=True)
class Call:
    """One tool call the agent made: its step, tool, parsed arguments and the step's check."""

    step: int
    name: str
    arguments: Any
    check_passed: bool | None = None


@dataclass(frozen=True)
class ExpectedAction:
    """One action the reference expects: a tool and its arguments."""

    name: str
    arguments: Any


@dataclass(frozen=True)
class AlignedAction:
    """One row of an alignment: an expected action, a call, or both."""

    status: str  # matched, wrong arguments, missing, extra
    name: str
    expected_index: int | None  # position in the expected actions (None: an extra call)
    expected: Any  # the expected arguments (ABSENT for an extra call)
    given: Any  # the arguments the agent gave (ABSENT for a missing action)
    step: int | None  # the call's step (None for a missing action)
    due_step: int | None = None  # a missing action: the step before which it was due (None: by the run's end)
    differences: tuple[Difference, ...] = ()
    counts: bool = True  # False: a departure that cannot change the outcome (a tool that writes nothing)
    check_passed: bool | None = None  # the check of the call's step

    @property
    def at_step(self) -> int | None:
        """Where this row sits along the run: the call's step, or the step a missing action was due by."""
        return self.step if self.step is not None else self.due_step

    @property
    def diverges(self) -> bool:
        """Whether this row is a departure from the reference that can change the outcome."""
        return self.status != MATCHED and self.counts


@dataclass(frozen=True)
class ActionAlignment:
    """Expected actions aligned with a run's tool calls, in run order, and the first divergence."""

    rows: tuple[AlignedAction, ...]
    first_divergence: AlignedAction | None

    def counts(self) -> dict[str, int]:
        """Rows per status (every status present, 0 when none)."""
        return {s: sum(r.status == s for r in self.rows) for s in STATUSES}

    def table(self) -> pd.DataFrame:
        """One row per aligned action, for display and download: values as compact JSON text.

        `step` is empty for an action missing by the end of the run (`missing_by_end`).
        """
        df = pd.DataFrame([{
            "status": r.status, "tool": r.name, "step": r.at_step, "missing_by_end": r.status == MISSING
            and r.due_step is None, "expected": show_value(r.expected, 400), "given": show_value(r.given, 400),
            "differences": "; ".join(d.text() for d in r.differences), "divergence": r.diverges,
            "check_passed": r.check_passed} for r in self.rows],
            columns=["status", "tool", "step", "missing_by_end", "expected", "given", "differences", "divergence",
                     "check_passed"])
        df["step"] = df["step"].astype("Int64")
        return df


def tool_calls(steps: Iterable[Mapping[str, Any]]) -> list[Call]:
    """The tool calls of a run's agent steps (dicts with the corpus `steps` columns), in order."""
    return [Call(int(s["step"]), str(c.get("name") or ""), parse_arguments(c.get("arguments")), s.get("check_passed"))
            for s in steps if s.get("source") == "agent" for c in (s.get("tool_calls") or [])]


def align_actions(expected: Sequence[ExpectedAction], calls: Sequence[Call],
                  harmless: Callable[[str], bool] | None = None) -> ActionAlignment:
    """Align expected actions with the calls of a run (see the module docstring).

    Each expected action takes, in order, the earliest unused call of the same tool with the same arguments;
    those left take the unused call of their tool with the fewest differing arguments (ties: a call whose check
    did not fail, as it took effect, then the earliest). `harmless(tool)` marks tools that cannot change the
    outcome (e.g. τ-bench's readers): their rows are listed but are not divergences.
    """
    used: dict[int, int] = {}  # call position -> expected position
    diffs: dict[int, list[Difference]] = {}
    for i, want in enumerate(expected):
        exact = next((j for j, c in enumerate(calls) if j not in used and c.name == want.name
                      and not _constrained(differences(want.arguments, c.arguments))), None)
        if exact is not None:
            used[exact], diffs[i] = i, differences(want.arguments, calls[exact].arguments)
    for i, want in enumerate(expected):
        if i in diffs:
            continue
        options = [(len(_constrained(d)), len(d), c.check_passed is False, j, d) for j, c in enumerate(calls)
                   if j not in used and c.name == want.name for d in [differences(want.arguments, c.arguments)]]
        if options:
            *_, j, d = min(options, key=lambda o: o[:4])
            used[j], diffs[i] = i, d
    by_expected = {i: j for j, i in used.items()}

    def counts(tool: str) -> bool:
        return not (harmless is not None and harmless(tool))

    rows: list[AlignedAction] = []
    for j, c in enumerate(calls):
        if j in used:
            i = used[j]
            status = WRONG_ARGUMENTS if _constrained(diffs[i]) else MATCHED
            rows.append(AlignedAction(status, c.name, i, expected[i].arguments, c.arguments, c.step,
                                      differences=tuple(diffs[i]), counts=counts(c.name), check_passed=c.check_passed))
        else:
            rows.append(AlignedAction(EXTRA, c.name, None, ABSENT, c.arguments, c.step, counts=counts(c.name),
                                      check_passed=c.check_passed))
    for i, want in enumerate(expected):
        if i in by_expected:
            continue
        later = [calls[by_expected[k]].step for k in range(i + 1, len(expected)) if k in by_expected]
        rows.append(AlignedAction(MISSING, want.name, i, want.arguments, ABSENT, None,
                                  due_step=min(later) if later else None, counts=counts(want.name)))
    order = {s: n for n, s in enumerate((WRONG_ARGUMENTS, EXTRA, MISSING, MATCHED))}
    big = 2**62  # a missing action due by the run's end sorts after every step
    rows.sort(key=lambda r: (r.at_step if r.at_step is not None else big, order[r.status], r.expected_index or 0))
    first = next((r for r in rows if r.diverges), None)
    return ActionAlignment(tuple(rows), first)


def _constrained(diffs: list[Difference]) -> list[Difference]:
    """The differences in arguments the reference names (an argument it leaves out is not constrained by it)."""
    return [d for d in diffs if d.expected is not ABSENT]


@dataclass(frozen=True)
class ExpectedOutput:
    """A text the agent was expected to say, and the first agent step that said it (None: never)."""

    text: str
    step: int | None


def find_outputs(outputs: Sequence[str], steps: Iterable[Mapping[str, Any]]) -> list[ExpectedOutput]:
    """Where each expected output first appears in an agent message, compared as τ-bench does.

    τ-bench looks for the output, lower-cased, in the lower-cased message with its commas removed.
    """
    said = [(int(s["step"]), (s.get("message") or "").lower().replace(",", ""))
            for s in steps if s.get("source") == "agent" and s.get("message")]
    return [ExpectedOutput(o, next((n for n, text in said if str(o).lower() in text), None)) for o in outputs]


@dataclass(frozen=True)
class TestOutcome:
    """A test the harness expected to pass (SWE-bench's FAIL_TO_PASS and PASS_TO_PASS) and whether it did."""

    __test__ = False  # not a pytest test class, despite its name

    test: str
    group: str  # FAIL_TO_PASS: the fix must make it pass; PASS_TO_PASS: it must keep passing
    passed: bool


@dataclass
class Reference:
    """What a run's source expected, and where its outcome comes from (in words)."""

    outcome_source: str
    actions: list[ExpectedAction] | None = None  # None: the source names no expected actions
    outputs: list[str] = field(default_factory=list)
    tests: list[TestOutcome] = field(default_factory=list)
    no_write: tuple[str, ...] = ()  # tools (names or name prefixes) that cannot change the outcome

    def harmless(self, tool: str) -> bool:
        """Whether a call of this tool cannot change the outcome (a departure there is no divergence)."""
        return bool(self.no_write) and tool.startswith(self.no_write)

    def align(self, steps: Sequence[Mapping[str, Any]]) -> ActionAlignment | None:
        """The expected actions aligned with these steps' tool calls (None without expected actions)."""
        if self.actions is None:
            return None
        return align_actions(self.actions, tool_calls(steps), self.harmless)


def metadata_of(raw: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's metadata as a dict ({} when it is absent, not JSON, or not an object)."""
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        value = json.loads(raw or "{}")
    except (json.JSONDecodeError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def _actions(value: Any, args_key: str) -> list[ExpectedAction] | None:
    """A list of {name, <args_key>} objects as expected actions (None if it is not such a list)."""
    if not isinstance(value, list):
        return None
    return [ExpectedAction(str(a.get("name")), parse_arguments(a.get(args_key, a.get("arguments", {}))))
            for a in value if isinstance(a, dict) and a.get("name") is not None]


def _tests(status: Any) -> list[TestOutcome]:
    """SWE-bench's tests_status ({group: {success: [...], failure: [...]}}) as expected tests and their results."""
    out = []
    for group in ("FAIL_TO_PASS", "PASS_TO_PASS"):
        part = status.get(group) if isinstance(status, dict) else None
        if isinstance(part, dict):
            out += [TestOutcome(str(t), group, ok) for ok, key in ((True, "success"), (False, "failure"))
                    for t in (part.get(key) or []) if isinstance(part.get(key), list)]
    return out


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _tau_bench(meta: dict[str, Any], reward: float | None) -> Reference:
    info = meta.get("reward_info")
    if not isinstance(info, dict):
        return Reference(f"the reward τ-bench recorded ({_number(reward)}); this run has no reward_info, so neither "
                         "its expected actions nor its expected outputs are known")
    detail: dict[str, Any] = info["info"] if isinstance(info.get("info"), dict) else {}
    parts = [f"τ-bench's reward ({_number(info.get('reward', reward))})"]
    if "r_actions" in detail:
        same = detail["r_actions"] == 1
        parts.append(f"r_actions = {_number(detail['r_actions'])}: the database after the run "
                     f"{'equals' if same else 'differs from'} the one the expected actions produce")
    if "r_outputs" in detail:
        parts.append(f"r_outputs = {_number(detail['r_outputs'])}: "
                     f"{'every' if detail['r_outputs'] == 1 else 'not every'} expected output was said")
    outputs = detail.get("outputs")
    names = list(outputs) if isinstance(outputs, dict) else outputs if isinstance(outputs, list) else []
    return Reference("; ".join(parts), actions=_actions(info.get("actions"), "kwargs"),
                     outputs=[str(o) for o in names], no_write=TAU_BENCH_NO_WRITE)


def reference_of(source: str | None, metadata: str | Mapping[str, Any] | None, reward: float | None = None,
                 outcome: str | None = None) -> Reference:
    """The reference a run's source recorded (from its metadata), and where its outcome comes from."""
    meta = metadata_of(metadata)
    if source == "tau-bench":
        return _tau_bench(meta, reward)
    if isinstance(meta.get("tests_status"), dict):
        tests = _tests(meta["tests_status"])
        failed = sum(not t.passed for t in tests)
        return Reference(f"the test harness: {failed} of {len(tests)} expected tests did not pass", tests=tests,
                         actions=_actions(meta.get("expected_actions"), "arguments"))
    if source == "who-and-when":
        truth = meta.get("ground_truth")
        text = f"the log's is_correct (the final answer compared with the ground truth {show_value(truth)})" \
            if truth is not None else "the log's is_correct"
        return Reference(text)
    if meta.get("exit_status") is not None:
        return Reference(f"the agent's exit status ({show_value(meta['exit_status'])}); the submission was not "
                         "scored here")
    actions = _actions(meta.get("expected_actions"), "arguments")
    if reward is not None:
        return Reference(f"the source's reward ({_number(reward)}; only a reward of 1 counts as success)",
                         actions=actions)
    return Reference(f"the outcome the source recorded ({outcome or 'unknown'})", actions=actions)


@dataclass
class RunReference:
    """Everything the Run details panel shows of one run: its reference, the alignment and its checks."""

    reference: Reference
    alignment: ActionAlignment | None
    outputs: list[ExpectedOutput]
    checks: int  # steps with a check
    failed_checks: int
    last_step: int  # the run's last step (where an action missing by the end was due)


def run_reference(store: CorpusStore, trajectory_id: str) -> RunReference | None:
    """One run's reference set beside its steps (None if the corpus has no such run)."""
    info = store.trajectory(trajectory_id)
    if info is None:
        return None
    steps = store.steps(trajectory_id).to_pylist()
    ref = reference_of(info["source"], info["metadata"], info["reward"], info["outcome"])
    checks = [s["check_passed"] for s in steps if s["check_passed"] is not None]
    return RunReference(ref, ref.align(steps), find_outputs(ref.outputs, steps), len(checks),
                        sum(c is False for c in checks), int(steps[-1]["step"]) if steps else 0)
