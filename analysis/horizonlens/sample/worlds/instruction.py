"""The "instruction" world: a document whose sections must meet constraints checked by a real checker."""

from __future__ import annotations

import random
import re
from typing import Any

from horizonlens.sample.world import Call, Environment, Result, Subgoal, ToolSpec, fixed, make_name

_TOPICS = ["budget", "timeline", "risks", "staffing", "vendors", "metrics", "security", "training", "rollout",
           "support", "testing", "migration", "licensing", "logistics", "privacy", "accessibility"]


def check_section(text: str, keyword: str, max_words: int) -> list[str]:
    """The instruction-following verifier: the violated constraints of one section."""
    problems = []
    words = text.split()
    if keyword.lower() not in text.lower():
        problems.append(f"missing required keyword '{keyword}'")
    if len(words) > max_words:
        problems.append(f"{len(words)} words, limit is {max_words}")
    if not text[:1].isupper():
        problems.append("must start with a capital letter")
    if not text.rstrip().endswith("."):
        problems.append("must end with a period")
    return problems


class InstructionWorld(Environment):
    """Write a planning document section by section under per-section constraints."""

    MUTATING = frozenset({"write_section"})

    def __init__(self, rng: random.Random, n_goals: int):
        super().__init__(rng=rng, domain="instruction")
        self.sections: dict[str, str] = {}
        self.spec: dict[str, tuple[str, int]] = {}
        for i in range(n_goals):
            title = f"{i + 1}. {rng.choice(_TOPICS).capitalize()}"
            keyword = make_name(rng).lower()
            self.spec[title] = (keyword, rng.randint(18, 40))
        self.instruction = ("Write a project plan with these sections. Each section must mention its keyword, stay "
                            "within its word limit, start with a capital letter and end with a period: "
                            + "; ".join(f"'{t}' (keyword '{k}', at most {w} words)" for t, (k, w) in self.spec.items()))
        self.tools = [
            ToolSpec("write_section", "write (or overwrite) a section", {"title": "str", "text": "str"}),
            ToolSpec("check_section", "run the constraint checker on a section", {"title": "str"}),
            ToolSpec("finish", "declare the document complete", {}),
        ]
        for title, (keyword, limit) in self.spec.items():
            text = self._draft(rng, title, keyword, limit)
            self.subgoals.append(Subgoal(
                key=title, intent=f"write section '{title}'",
                builders=[fixed("write_section", {"title": title, "text": text}),
                          fixed("check_section", {"title": title})],
                truth=True,
            ))

    @staticmethod
    def _draft(rng: random.Random, title: str, keyword: str, limit: int) -> str:
        topic = title.split(". ", 1)[1].lower()
        words = (f"The {topic} work is coordinated through the {keyword} programme, which sets owners, review dates "
                 f"and acceptance criteria for every milestone in this plan and tracks open issues weekly").split()
        return " ".join(words[: max(10, limit - rng.randint(1, 6))]).rstrip(",") + "."

    def state(self) -> Any:
        """The document: section title -> text."""
        return self.sections

    def tool_write_section(self, title: str, text: str) -> Result:
        """Tool: write or overwrite one of the specified sections."""
        if title not in self.spec:
            return Result(f"Error: unknown section '{title}'", error=True)
        self.sections[title] = text
        return Result(f"Section '{title}' saved ({len(text.split())} words).", value=title)

    def tool_check_section(self, title: str) -> Result:
        """Tool: run `check_section` on a written section; value True if it meets every constraint."""
        if title not in self.sections:
            return Result(f"Error: section '{title}' has not been written", error=True)
        problems = check_section(self.sections[title], *self.spec[title])
        return Result("OK: all constraints met." if not problems else "Violations: " + "; ".join(problems),
                      value=not problems)

    def tool_finish(self) -> Result:
        """Tool: submit the document; the value is how many sections meet their constraints."""
        done = sum(1 for t in self.spec if t in self.sections and not check_section(self.sections[t], *self.spec[t]))
        return Result(f"Document submitted: {done}/{len(self.spec)} sections meet their constraints.", value=done)

    def corrupt(self, call: Call, rng: random.Random) -> tuple[Call, str]:
        """A section that breaks a constraint, or a check of the wrong section.

        The broken section lacks its keyword (`missing_keyword`) or exceeds its word limit (`over_length`);
        the wrong check names a section title that does not exist (`wrong_section`).
        """
        if call.name == "write_section":
            keyword, limit = self.spec[call.args["title"]]
            text = call.args["text"]
            if rng.random() < 0.5:
                return Call("write_section", {**call.args, "text": re.sub(keyword, "the team", text, flags=re.I)}), \
                    "missing_keyword"
            padding = " In addition, stakeholders will receive a summary of progress, blockers and decisions" \
                      " at each review so that nothing is lost between phases."
            return Call("write_section", {**call.args, "text": text + padding * (1 + limit // 20)}), "over_length"
        return Call("check_section", {"title": call.args["title"].split(". ", 1)[-1]}), "wrong_section"

    def final_call(self, beliefs: dict[str, Any]) -> Call:
        """Declare the document complete."""
        return Call("finish", {})

    def reward(self, final: Result) -> float:
        """Fraction of the sections that meet their constraints."""
        return float(final.value) / len(self.spec)
