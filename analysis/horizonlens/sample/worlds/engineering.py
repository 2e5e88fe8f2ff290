"""The "engineering" world: a toy repository of small functions with unit tests that run; fix the bugs."""

from __future__ import annotations

import random
import re
from typing import Any

from horizonlens.sample.world import Call, Environment, Result, Subgoal, ToolSpec, fixed, make_name, safe_eval

_OPS_TEXT = ["+", "-", "*"]


class EngineeringWorld(Environment):
    """A toy repository: each module holds one function with a planted bug and tests that run."""

    MUTATING = frozenset({"edit_file"})

    def __init__(self, rng: random.Random, n_goals: int):
        super().__init__(rng=rng, domain="engineering")
        self.files: dict[str, str] = {}
        self.tests: dict[str, list[tuple[int, int]]] = {}
        self.correct: dict[str, str] = {}
        for i in range(n_goals):
            fn = f"{make_name(rng).lower()}_{i}"
            a, b, c = rng.randint(2, 9), rng.randint(1, 9), rng.randint(1, 5)
            op1, op2 = rng.choice(_OPS_TEXT), rng.choice(_OPS_TEXT)
            good = f"x * {a} {op1} {b} {op2} {c}"
            bad_op = rng.choice([o for o in _OPS_TEXT if o != op1])
            bad = f"x * {a} {bad_op} {b} {op2} {c}"
            path = f"src/{fn}.py"
            self.files[path] = self._module(fn, bad)
            self.correct[path] = good
            self.tests[path] = [(x, int(safe_eval(good, {"x": x}))) for x in (0, 1, 2, 5, 11)]
            self.subgoals.append(Subgoal(
                key=path, intent=f"fix the failing tests for {fn}",
                builders=[fixed("read_file", {"path": path}),
                          fixed("edit_file", {"path": path, "old": f"return {bad}", "new": f"return {good}"}),
                          fixed("run_tests", {"path": path})],
                truth=True,
            ))
        self.instruction = (f"The repository has {n_goals} modules with failing unit tests. Find and fix each bug "
                            "without changing the tests, then run the full test suite and finish.")
        self.tools = [
            ToolSpec("read_file", "print a file", {"path": "str"}),
            ToolSpec("edit_file", "replace the exact text `old` with `new` in a file",
                     {"path": "str", "old": "str", "new": "str"}),
            ToolSpec("run_tests", "run the tests of one module (or all with path='all')", {"path": "str"}),
        ]

    @staticmethod
    def _module(fn: str, expr: str) -> str:
        return (f'"""Utility {fn}: part of the pricing pipeline."""\n\n\n'
                f"def {fn}(x: int) -> int:\n    # Computes the adjusted value used downstream.\n    return {expr}\n")

    def state(self) -> Any:
        """The repository: file path -> source text."""
        return self.files

    def tool_read_file(self, path: str) -> Result:
        """Tool: a source file with line numbers."""
        if path not in self.files:
            return Result(f"Error: FileNotFoundError: {path}", error=True)
        numbered = "\n".join(f"{i + 1:4d}  {line}" for i, line in enumerate(self.files[path].splitlines()))
        return Result(numbered, value=path)

    def tool_edit_file(self, path: str, old: str, new: str) -> Result:
        """Tool: replace the first exact occurrence of `old` with `new`; an error if `old` is not there."""
        text = self.files.get(path)
        if text is None:
            return Result(f"Error: FileNotFoundError: {path}", error=True)
        if old not in text:
            return Result(f"Error: text to replace not found in {path}", error=True)
        self.files[path] = text.replace(old, new, 1)
        return Result(f"Edited {path}: 1 replacement.", value=path)

    def _run(self, path: str) -> tuple[int, int, list[str]]:
        expr = re.search(r"return (.+)", self.files[path]).group(1)  # type: ignore[union-attr]
        passed, failures = 0, []
        for x, want in self.tests[path]:
            got: float | str
            try:
                got = safe_eval(expr, {"x": x})
            except ValueError as exc:
                got = f"error: {exc}"
            if got == want:
                passed += 1
            else:
                failures.append(f"FAILED test_{path[4:-3]}[x={x}] - assert {got} == {want}")
        return passed, len(self.tests[path]) - passed, failures

    def tool_run_tests(self, path: str) -> Result:
        """Tool: run one module's unit tests (or all with path='all'); pytest-style output, value True if green."""
        paths = list(self.files) if path == "all" else [path]
        if any(p not in self.files for p in paths):
            return Result(f"Error: no tests for {path}", error=True)
        total_pass, total_fail, lines = 0, 0, []
        for p in paths:
            ok, bad, failures = self._run(p)
            total_pass, total_fail = total_pass + ok, total_fail + bad
            lines += failures
        head = "============================= test session starts =============================="
        summary = f"=========== {total_fail} failed, {total_pass} passed in 0.{len(paths):02d}s ==========="
        return Result("\n".join([head, *lines, summary]), value=total_fail == 0)

    def corrupt(self, call: Call, rng: random.Random) -> tuple[Call, str]:
        """A wrong fix (`wrong_fix`), an edit that does not apply (`edit_not_applied`) or a wrong path.

        A wrong fix changes a constant; an edit that does not apply has old text that is not in the file;
        `wrong_path` reads or tests a file that does not exist.
        """
        if call.name == "edit_file":
            new = call.args["new"]
            if rng.random() < 0.5:
                wrong_new = re.sub(r"\* (\d)", lambda m: f"* {int(m.group(1)) + 1}", new, count=1)
                return Call("edit_file", {**call.args, "new": wrong_new}), "wrong_fix"
            unmatched = call.args["old"].replace("return ", "return  ")
            return Call("edit_file", {**call.args, "old": unmatched}), "edit_not_applied"
        if call.name == "read_file":
            return Call("read_file", {"path": call.args["path"].replace("src/", "lib/")}), "wrong_path"
        return Call("run_tests", {"path": call.args["path"].replace(".py", "_test.py")}), "wrong_path"

    def repair_calls(self, wrong: Call, right: Call, wrong_result: Result) -> list[Call]:
        """Revert an applied wrong edit by editing its new text back to the old."""
        if wrong.name == "edit_file" and not wrong_result.error:
            args = wrong.args
            return [Call("edit_file", {"path": args["path"], "old": args["new"], "new": args["old"]})]
        return []

    def final_call(self, beliefs: dict[str, Any]) -> Call:
        """Run the whole test suite."""
        return Call("run_tests", {"path": "all"})

    def reward(self, final: Result) -> float:
        """Fraction of modules whose tests all pass."""
        ok = sum(self._run(p)[1] == 0 for p in self.files)
        return ok / len(self.files)
