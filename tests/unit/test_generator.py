"""The sample generator: deterministic, real environments, planted dynamics visible in its output."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from horizonlens.sample.generate import TEACHERS, Planted, generate_corpus, generate_rows
from horizonlens.sample.world import safe_eval
from horizonlens.sample.worlds import WORLDS
from horizonlens.sample.worlds.instruction import check_section


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and "index" not in p.relative_to(root).parts:  # the word index is derived, with timestamps
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = generate_corpus(str(tmp_path / "a"), 12, seed=3)
    generate_corpus(str(tmp_path / "b"), 12, seed=3)
    generate_corpus(str(tmp_path / "c"), 12, seed=4)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    assert a["planted"]["self_conditioning"] == Planted().self_conditioning


def test_manifest_carries_planted_parameters(tiny_corpus: Path) -> None:
    manifest = json.loads((tiny_corpus / "manifest.json").read_text())
    planted = manifest["planted"]
    assert set(planted["base_error_rate"]) == set(WORLDS)
    assert planted["self_conditioning"] > 1 and 0 < planted["recovery_rate"] < 1


def test_shape_of_the_corpus(tiny_corpus: Path) -> None:
    trajs = pq.read_table(tiny_corpus / "trajectories").to_pylist()
    steps = pq.read_table(tiny_corpus / "steps").to_pylist()
    planted = Planted()
    assert {t["domain"] for t in trajs} == set(WORLDS)
    by_task: dict[str, list[tuple[str, int]]] = {}
    for t in trajs:
        by_task.setdefault(t["task_id"], []).append((t["agent"], t["trial"]))
        # the baseline was not distilled; everyone else carries the domain's teacher
        assert t["teacher"] == (None if t["agent"] == planted.baseline else TEACHERS[t["domain"]])
    for task, runs in by_task.items():  # every task: the same line-up, two trials each, in the same world
        domain = next(t["domain"] for t in trajs if t["task_id"] == task)
        assert sorted(runs) == sorted((a, trial) for a in planted.agents_for(domain) for trial in (0, 1))
        assert len({t["task"] for t in trajs if t["task_id"] == task}) == 1
    per_traj: dict[str, list[dict]] = {}
    for s in steps:
        per_traj.setdefault(s["trajectory_id"], []).append(s)
    for t in trajs:
        rows = per_traj[t["trajectory_id"]]
        assert len(rows) == t["n_steps"] and sum(r["n_tokens"] for r in rows) == t["n_tokens"]
        failed = [r["step"] for r in rows if r["check_passed"] is False]
        assert t["n_failed_checks"] == len(failed)
        assert t["first_failed_step"] == (failed[0] if failed else None)
        assert rows[0]["source"] == "system" and rows[1]["source"] == "user"
        decisive = [r["step"] for r in rows if r["is_decisive_error"]]
        if t["outcome"] == "success":
            assert t["reward"] == 1.0 and not decisive
        else:
            assert t["reward"] < 1.0
            # the decisive step, when annotated, is a failed check
            assert all(rows[d]["check_passed"] is False for d in decisive) and len(decisive) <= 1
        for r in rows:  # every tool call is answered by an observation with the same id
            for call in r["tool_calls"]:
                assert [o["call_id"] for o in r["observations"]] == [call["id"]]
                json.loads(call["arguments"])


def test_tools_really_execute() -> None:
    rng = random.Random(1)
    eng = WORLDS["engineering"](rng, 2)
    path = next(iter(eng.files))
    before = eng.execute(eng.subgoals[0].builders[2]([]))
    assert "failed" in before.text and before.value is False  # the planted bug makes its tests fail
    fix = eng.subgoals[0].builders[1]([])
    eng.execute(fix)
    after = eng.execute(eng.subgoals[0].builders[2]([]))
    assert after.value is True and "0 failed" in after.text and path in eng.files
    assert safe_eval("x * 3 + 1", {"x": 4}) == 13
    with pytest.raises(ValueError):
        safe_eval("__import__('os').system('true')")
    assert check_section("hello world", "zeta", 1) == ["missing required keyword 'zeta'", "2 words, limit is 1",
                                                       "must start with a capital letter", "must end with a period"]
    booking = WORLDS["tool_calling"](random.Random(2), 2)
    flight = booking.execute(booking.subgoals[0].builders[0]([])).value
    res = booking.execute(booking.subgoals[0].builders[1]([flight]))
    assert res.value.startswith("R") and booking.db["reservations"][res.value] == flight


@pytest.mark.parametrize("domain", sorted(WORLDS))
def test_corrupted_actions_fail_the_verifier(domain: str) -> None:
    """A wrong action changes what the environment returns, so the check sees it."""
    rng = random.Random(5)
    env = WORLDS[domain](random.Random(11), 4)
    for goal in env.subgoals:
        values = []
        for build in goal.builders:
            if values and values[-1] is None:
                break
            intended = build(values)
            wrong, label = env.corrupt(intended, rng)
            ref, ref_state = env.reference(intended)
            got, got_state = env.reference(wrong)
            assert label and (got.text != ref.text or got_state != ref_state), (domain, intended, wrong)
            values.append(env.execute(intended).value)


def test_planted_rates_show_in_the_checks() -> None:
    """Failure share before any earlier failure is near the planted base rate; it rises after one."""
    planted = Planted()
    n0 = f0 = n1 = f1 = 0
    expected = 0.0
    for traj, rows in generate_rows(360, seed=11, planted=planted):
        rate = planted.base_rate(traj["domain"], traj["agent"])
        failed_before = 0
        for r in rows:
            if r["check_passed"] is None:
                continue
            if failed_before == 0:
                n0 += 1
                f0 += r["check_passed"] is False
                expected += rate
            elif failed_before == 1:
                n1 += 1
                f1 += r["check_passed"] is False
            failed_before += r["check_passed"] is False
    p0, p1 = f0 / n0, f1 / n1
    # undo steps are never corrupted, so the observed rate sits a little under the planted one
    assert 0.75 * expected / n0 <= p0 <= 1.1 * expected / n0
    assert p1 / p0 > 1.2


def test_failed_checks_say_what_was_expected_and_given() -> None:
    """A failed check's detail names the expected value and the one the agent gave (the call's own argument)."""
    seen = 0
    for _, rows in generate_rows(60, seed=5):
        for r in rows:
            if r["check_passed"] is not False:
                continue
            seen += 1
            label, _, what = r["check_detail"].partition(": ")
            assert label == r["error_label"] and what.startswith("expected "), r["check_detail"]
            args = json.loads(r["tool_calls"][0]["arguments"])
            if what.startswith("expected call "):
                assert what.endswith(f"given {r['tool_calls'][0]['name']}")
                continue
            for part in what.split("; the tool returned an error")[0].split("; "):
                key, given = part.removeprefix("expected ").split(" ", 1)[0], part.rsplit(", given ", 1)[1]
                value = args.get(key)
                shown = value if isinstance(value, str) else json.dumps(value)
                assert given == " ".join(str(shown).split())[:60] + ("…" if len(" ".join(str(shown).split())) > 60
                                                                     else ""), (part, args)
    assert seen > 20


def test_planted_agents_differ_where_documented() -> None:
    planted = Planted()
    assert planted.base_rate("engineering", "a1-student-ckpt-4k") > planted.base_rate("engineering",
                                                                                   "a1-student-ckpt-2k")
    assert planted.base_rate("search", "a1-student-ckpt-4k") < planted.base_rate("search", "a1-student-ckpt-2k")
    assert planted.gamma("a1-student-ckpt-4k") < planted.gamma("a1-student-ckpt-2k") == planted.self_conditioning
    assert planted.hazard("search", "dense-7b-baseline", 10) == pytest.approx(
        min(planted.hazard_cap, 0.030 * 1.6 * 1.6 ** planted.conditioning_cap))
