"""Six simulated worlds, one per Agents-A1-style teacher domain; every tool really executes.

- search:      a document collection with keyword search; gather one fact per entity, then answer.
- engineering: a toy repository of small functions with unit tests that run; fix the bugs.
- science:     unit conversion and an arithmetic evaluator; compute quantities and report a total.
- instruction: a document whose sections must meet constraints checked by a real checker.
- tool_calling: a stateful airline booking database (tau-bench-like); carry out customer requests.
- general:     a calendar with attendees and a message outbox; schedule meetings and notify people.
"""

from __future__ import annotations

import random
import re
from typing import Any, Callable

from horizonlens.sample.world import Call, Environment, Result, Subgoal, ToolSpec, fixed, fmt_number, safe_eval

_SYL = ["ka", "lo", "mi", "ren", "ta", "vor", "sel", "an", "dri", "qua", "bel", "tor", "nia", "ost", "ul", "fen",
        "gar", "is", "mon", "pe", "rha", "sul", "ved", "yan", "zor", "el", "ith", "cor", "dun", "hal"]
_FILLER = [
    "Historical records on this subject are incomplete, and several secondary sources disagree on details.",
    "The archive entry was last revised after a review by the regional records office.",
    "Local accounts describe the period as one of rapid growth and frequent reorganisation.",
    "Later surveys confirmed most of the figures reported in the original census.",
    "Researchers continue to debate how representative the surviving documents are.",
    "A short bibliography and related entries are listed at the end of this page.",
    "Its early years were shaped by a small group of founding members and a series of public commissions.",
    "During the following decades the organisation expanded into neighbouring regions and new fields of work.",
    "Annual reports from this period list new departments, partnerships and several relocations.",
    "Not to be confused with similarly named bodies in other regions, which have separate entries.",
    "Photographs and correspondence from the period are held in the municipal collection.",
    "The governing board was restructured twice, most recently after an external audit.",
    "Public lectures and open days have been held regularly since the middle of the last century.",
    "Funding came from a mixture of membership fees, endowments and government contracts.",
]


def make_name(rng: random.Random, parts: int = 2) -> str:
    """A made-up proper name (organisation, city, person) built from `parts` random syllables."""
    return "".join(rng.choice(_SYL) for _ in range(parts)).capitalize()


# ----------------------------------------------------------------------------------------------
class SearchWorld(Environment):
    """Long-horizon search: find one attribute of each of many entities and report an aggregate."""

    def __init__(self, rng: random.Random, n_goals: int):
        super().__init__(rng=rng, domain="search")
        n_entities = max(12, n_goals * 2)
        names: list[str] = []
        while len(names) < n_entities:
            stem = make_name(rng)  # drawn before the kind: the order of draws fixes the corpus for a seed
            name = f"{stem} {rng.choice(['Institute', 'Works', 'Observatory', 'Guild', 'Company', 'Archive'])}"
            if name not in names:
                names.append(name)
        self.docs: dict[str, dict[str, Any]] = {}
        for i, name in enumerate(names):
            founded = rng.randint(1650, 2015)
            city = make_name(rng, 3)
            staff = rng.randint(5, 9000)
            body = [f"{name} is an organisation based in {city}.", f"{name} was founded in {founded}.",
                    f"It employs about {staff} people."]
            body += rng.sample(_FILLER, k=rng.randint(5, 11))
            rng.shuffle(body)
            self.docs[f"doc-{i:04d}"] = {"title": name, "text": " ".join(body), "founded": founded}
        targets = rng.sample(range(n_entities), k=n_goals)
        self.targets = [names[i] for i in targets]
        self.instruction = (
            f"For each of the following {n_goals} organisations, find the year it was founded and report every "
            f"organisation with its year, in the order given: " + "; ".join(self.targets) + "."
        )
        self.tools = [
            ToolSpec("search", "keyword search over the document collection; returns the top 3 hits",
                     {"query": "str"}),
            ToolSpec("open_document", "return the full text of a document", {"doc_id": "str"}),
            ToolSpec("submit_answer", "submit the final answer", {"answer": "str"}),
        ]
        for name in self.targets:
            doc_id = next(d for d, doc in self.docs.items() if doc["title"] == name)
            self.subgoals.append(Subgoal(
                key=name, intent=f"find when {name} was founded",
                builders=[fixed("search", {"query": f"{name} founded"}),
                          lambda v: Call("open_document", {"doc_id": v[-1]})],
                truth=(name, self.docs[doc_id]["founded"]),
            ))

    def tool_search(self, query: str) -> Result:
        """Tool: the top 3 documents by keyword count (title words weigh triple); the best hit is the value."""
        terms = set(re.findall(r"\w+", query.lower()))
        scored = []
        for doc_id, doc in self.docs.items():
            words = re.findall(r"\w+", (doc["title"] + " " + doc["text"]).lower())
            title_words = set(re.findall(r"\w+", doc["title"].lower()))
            score = sum(words.count(t) for t in terms) + 3 * len(terms & title_words)
            scored.append((-score, doc_id))
        scored.sort()
        hits = [d for s, d in scored[:3] if s < 0]
        if not hits:
            return Result("No results.", value=None)
        lines = [f"{i + 1}. [{d}] {self.docs[d]['title']}: {self.docs[d]['text'][:90]}..."
                 for i, d in enumerate(hits)]
        return Result("\n".join(lines), value=hits[0])

    def tool_open_document(self, doc_id: str) -> Result:
        """Tool: one document's full text; the value is the (organisation, founding year) it states."""
        doc = self.docs.get(doc_id)
        if doc is None:
            return Result(f"Error: no document with id '{doc_id}'", error=True)
        return Result(f"# {doc['title']}\n\n{doc['text']}", value=(doc["title"], doc["founded"]))

    def tool_submit_answer(self, answer: str) -> Result:
        """Tool: the agent's final answer, kept verbatim for `reward`."""
        return Result(f"Answer recorded: {answer}", value=answer)

    def corrupt(self, call: Call, rng: random.Random) -> tuple[Call, str]:
        """Search for another organisation (`wrong_entity`) or open another document (`wrong_document`)."""
        if call.name == "search":
            other = rng.choice([d["title"] for d in self.docs.values() if d["title"] not in call.args["query"]])
            return Call("search", {"query": f"{other} founded"}), "wrong_entity"
        others = [d for d in self.docs if d != call.args.get("doc_id")]
        return Call("open_document", {"doc_id": rng.choice(others)}), "wrong_document"

    def final_call(self, beliefs: dict[str, Any]) -> Call:
        """Submit every organisation with the founding year the agent believes (or 'unknown')."""
        years = [f"{k}: {v[1] if isinstance(v, tuple) else 'unknown'}" for k, v in beliefs.items()]
        return Call("submit_answer", {"answer": "; ".join(years)})

    def reward(self, final: Result) -> float:
        """Fraction of the organisations answered with their true founding year."""
        given = dict(part.split(": ", 1) for part in str(final.value).split("; ") if ": " in part)
        right = sum(given.get(name) == str(year) for name, year in (s.truth for s in self.subgoals))
        return right / len(self.subgoals)


# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
_UNITS = {"mass": {"g": 1e-3, "kg": 1.0, "mg": 1e-6, "t": 1e3}, "speed": {"km/h": 1 / 3.6, "m/s": 1.0, "mph": 0.44704}}


class ScienceWorld(Environment):
    """Kinetic energy of many bodies from mixed units; unit conversion and arithmetic really run."""

    def __init__(self, rng: random.Random, n_goals: int):
        super().__init__(rng=rng, domain="science")
        self.bodies: list[tuple[str, float, str, float, str]] = []  # (name, mass, mass unit, speed, speed unit)
        for i in range(n_goals):
            mu = rng.choice(["g", "mg", "t"])
            su = rng.choice(["km/h", "mph"])
            self.bodies.append((f"sample {chr(65 + i % 26)}{i // 26 or ''}", round(rng.uniform(0.5, 900), 2), mu,
                                round(rng.uniform(1, 120), 1), su))
        self.instruction = ("Compute the total kinetic energy, in joules, of these bodies: "
                            + "; ".join(f"{n}: mass {m} {mu}, speed {v} {su}" for n, m, mu, v, su in self.bodies)
                            + ". Report the total to 4 significant figures.")
        self.tools = [
            ToolSpec("convert", "convert a value between units",
                     {"value": "float", "from_unit": "str", "to_unit": "str"}),
            ToolSpec("calc", "evaluate an arithmetic expression", {"expression": "str"}),
            ToolSpec("submit_answer", "submit the final answer", {"answer": "str"}),
        ]
        for name, m, mu, v, su in self.bodies:
            truth = 0.5 * m * _UNITS["mass"][mu] * (v * _UNITS["speed"][su]) ** 2
            self.subgoals.append(Subgoal(
                key=name, intent=f"compute the kinetic energy of {name}",
                builders=[fixed("convert", {"value": m, "from_unit": mu, "to_unit": "kg"}),
                          fixed("convert", {"value": v, "from_unit": su, "to_unit": "m/s"}),
                          lambda got: Call("calc", {"expression": f"0.5 * {fmt_number(got[0])} * "
                                                                  f"{fmt_number(got[1])} ** 2"})],
                truth=truth,
            ))

    def tool_convert(self, value: float, from_unit: str, to_unit: str) -> Result:
        """Tool: convert a mass or a speed between units, to 6 significant figures."""
        kind = next((k for k, u in _UNITS.items() if from_unit in u and to_unit in u), None)
        if kind is None:
            return Result(f"Error: cannot convert {from_unit} to {to_unit}", error=True)
        out = value * _UNITS[kind][from_unit] / _UNITS[kind][to_unit]
        return Result(f"{value} {from_unit} = {fmt_number(out)} {to_unit}", value=float(fmt_number(out)))

    def tool_calc(self, expression: str) -> Result:
        """Tool: evaluate an arithmetic expression with `safe_eval`, to 6 significant figures."""
        try:
            out = safe_eval(expression)
        except ValueError as exc:
            return Result(f"Error: {exc}", error=True)
        return Result(fmt_number(out), value=float(fmt_number(out)))

    def tool_submit_answer(self, answer: str) -> Result:
        """Tool: the agent's final answer, kept verbatim for `reward`."""
        return Result(f"Answer recorded: {answer}", value=answer)

    def corrupt(self, call: Call, rng: random.Random) -> tuple[Call, str]:
        """Convert from the wrong unit (`unit_error`) or slip in the energy formula (`arithmetic_error`)."""
        if call.name == "convert":
            units = _UNITS["mass"] if call.args["to_unit"] == "kg" else _UNITS["speed"]
            wrong = rng.choice([u for u in units if u != call.args["from_unit"] and u != call.args["to_unit"]])
            return Call("convert", {**call.args, "from_unit": wrong}), "unit_error"
        expr = call.args["expression"]
        return Call("calc", {"expression": expr.replace("** 2", "* 2") if rng.random() < 0.5
                             else expr.replace("0.5 *", "0.25 *")}), "arithmetic_error"

    def final_call(self, beliefs: dict[str, Any]) -> Call:
        """Submit the sum of the energies the agent computed, to 4 significant figures."""
        total = sum(v for v in beliefs.values() if isinstance(v, float))
        return Call("submit_answer", {"answer": f"{total:.4g} J"})

    def reward(self, final: Result) -> float:
        """1.0 if the submitted total matches the true total to 4 significant figures, else 0.0."""
        total = sum(s.truth for s in self.subgoals)
        return 1.0 if final.value == f"{total:.4g} J" else 0.0


# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
_AIRPORTS = ["SFO", "JFK", "ORD", "LAX", "SEA", "BOS", "DEN", "ATL", "MIA", "PHX", "IAH", "MSP"]


class BookingWorld(Environment):
    """A tau-bench-like airline database: users, flights, reservations; requests mutate it."""

    MUTATING = frozenset({"book_reservation", "cancel_reservation"})

    def __init__(self, rng: random.Random, n_goals: int):
        super().__init__(rng=rng, domain="tool_calling")
        self.user_id = f"{make_name(rng).lower()}_{rng.randint(1000, 9999)}"
        self.db: dict[str, Any] = {"flights": {}, "reservations": {}, "balance": rng.randint(2000, 9000) * 1.0}
        self.next_res = 1
        requests = []
        for _ in range(n_goals):
            o, d = rng.sample(_AIRPORTS, 2)
            date = f"2026-{rng.randint(7, 9):02d}-{rng.randint(1, 28):02d}"
            options = []
            for _ in range(rng.randint(2, 4)):
                fid = f"HL{rng.randint(100, 999)}"
                while fid in self.db["flights"]:
                    fid = f"HL{rng.randint(100, 999)}"
                self.db["flights"][fid] = {"origin": o, "destination": d, "date": date,
                                           "price": rng.randint(90, 700), "seats": rng.randint(1, 9)}
                options.append(fid)
            cheapest = min(options, key=lambda f: self.db["flights"][f]["price"])
            requests.append((o, d, date, cheapest))
            self.subgoals.append(Subgoal(
                key=f"{o}-{d}-{date}", intent=f"book the cheapest flight {o}→{d} on {date}",
                builders=[fixed("search_flights", {"origin": o, "destination": d, "date": date}),
                          self._book_found_flight],
                truth=cheapest,
            ))
        self.goal = sorted(r[3] for r in requests)
        self.instruction = (f"Customer {self.user_id} asks: please book me the cheapest economy flight for each of "
                            "these trips, paying from my account balance: "
                            + "; ".join(f"{o} to {d} on {date}" for o, d, date, _ in requests) + ".")
        self.tools = [
            ToolSpec("search_flights", "list flights for a route and date",
                     {"origin": "str", "destination": "str", "date": "YYYY-MM-DD"}),
            ToolSpec("book_reservation", "book a seat, charging the user's balance",
                     {"user_id": "str", "flight_id": "str", "cabin": "str"}),
            ToolSpec("cancel_reservation", "cancel a reservation and refund it", {"reservation_id": "str"}),
            ToolSpec("get_user_details", "show the user's balance and reservations", {"user_id": "str"}),
        ]

    def _book_found_flight(self, values: list[Any]) -> Call:
        """The second link of a booking chain: book the flight the search returned, in economy."""
        return Call("book_reservation", {"user_id": self.user_id, "flight_id": values[-1], "cabin": "economy"})

    def state(self) -> Any:
        """The airline database: flights, reservations and the customer's balance."""
        return self.db

    def tool_search_flights(self, origin: str, destination: str, date: str) -> Result:
        """Tool: the flights of a route and date as JSON, cheapest first; the cheapest id is the value."""
        found = [(fid, f) for fid, f in self.db["flights"].items()
                 if f["origin"] == origin and f["destination"] == destination and f["date"] == date]
        if not found:
            return Result("[]", value=None)
        found.sort(key=lambda x: x[1]["price"])
        rows = [f'{{"flight_id": "{fid}", "price": {f["price"]}, "seats_left": {f["seats"]}}}' for fid, f in found]
        return Result("[" + ", ".join(rows) + "]", value=found[0][0])

    def tool_book_reservation(self, user_id: str, flight_id: str, cabin: str) -> Result:
        """Tool: book an economy seat and charge the balance; the reservation id is the value."""
        if user_id != self.user_id:
            return Result(f"Error: user '{user_id}' not found", error=True)
        flight = self.db["flights"].get(flight_id)
        if flight is None:
            return Result(f"Error: flight '{flight_id}' not found", error=True)
        if cabin != "economy":
            return Result(f"Error: cabin '{cabin}' not available on {flight_id}", error=True)
        if flight["price"] > self.db["balance"]:
            return Result("Error: insufficient balance", error=True)
        flight["seats"] -= 1
        self.db["balance"] -= flight["price"]
        rid = f"R{self.next_res:04d}"
        self.next_res += 1
        self.db["reservations"][rid] = flight_id
        return Result(f'{{"reservation_id": "{rid}", "flight_id": "{flight_id}", "charged": {flight["price"]}}}',
                      value=rid)

    def tool_cancel_reservation(self, reservation_id: str) -> Result:
        """Tool: cancel a reservation, free its seat and refund its price."""
        fid = self.db["reservations"].pop(reservation_id, None)
        if fid is None:
            return Result(f"Error: reservation '{reservation_id}' not found", error=True)
        self.db["flights"][fid]["seats"] += 1
        self.db["balance"] += self.db["flights"][fid]["price"]
        refunded = self.db["flights"][fid]["price"]
        return Result(f'{{"cancelled": "{reservation_id}", "refunded": {refunded}}}', value=True)

    def tool_get_user_details(self, user_id: str) -> Result:
        """Tool: the customer's balance and reservations as JSON."""
        if user_id != self.user_id:
            return Result(f"Error: user '{user_id}' not found", error=True)
        return Result(f'{{"user_id": "{user_id}", "balance": {self.db["balance"]:.2f}, '
                      f'"reservations": {sorted(self.db["reservations"].items())}}}', value=user_id)

    def corrupt(self, call: Call, rng: random.Random) -> tuple[Call, str]:
        """Book another flight (`wrong_flight`) or cabin (`policy_violation`), or search another day (`wrong_date`)."""
        if call.name == "book_reservation":
            if rng.random() < 0.7:
                others = [f for f in self.db["flights"] if f != call.args["flight_id"]]
                return Call("book_reservation", {**call.args, "flight_id": rng.choice(others)}), "wrong_flight"
            return Call("book_reservation", {**call.args, "cabin": "business"}), "policy_violation"
        args = dict(call.args)
        args["date"] = args["date"][:-2] + f"{(int(args['date'][-2:]) % 28) + 1:02d}"
        return Call("search_flights", args), "wrong_date"

    def repair_calls(self, wrong: Call, right: Call, wrong_result: Result) -> list[Call]:
        """Cancel a wrong booking that went through."""
        if wrong.name == "book_reservation" and not wrong_result.error:
            return [Call("cancel_reservation", {"reservation_id": wrong_result.value})]
        return []

    def final_call(self, beliefs: dict[str, Any]) -> Call:
        """Show the customer's account, so the final state is on record."""
        return Call("get_user_details", {"user_id": self.user_id})

    def reward(self, final: Result) -> float:
        """1.0 if exactly the cheapest flights are booked; else half the fraction of them that are."""
        booked = sorted(self.db["reservations"].values())
        return 1.0 if booked == self.goal else sum(1 for g in self.goal if g in booked) / len(self.goal) * 0.5


# ----------------------------------------------------------------------------------------------
class CalendarWorld(Environment):
    """General agentic work: schedule meetings into free slots and notify each attendee."""

    MUTATING = frozenset({"add_event", "delete_event", "send_message"})

    DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri"]

    def __init__(self, rng: random.Random, n_goals: int):
        super().__init__(rng=rng, domain="general")
        self.events: dict[str, list[list[Any]]] = {d: [] for d in self.DAYS}
        self.outbox: list[list[str]] = []
        for d in self.DAYS:  # pre-existing busy blocks
            for h in rng.sample(range(9, 17), k=rng.randint(1, 4)):
                self.events[d].append([h, 1, "busy"])
        self.meetings: list[tuple[str, str, str]] = []  # (title, attendee, day)
        for i in range(n_goals):
            who = make_name(rng)
            day = rng.choice(self.DAYS)
            self.meetings.append((f"sync with {who} #{i + 1}", who, day))
        self.instruction = ("Schedule a one-hour meeting for each request in the earliest free slot of its day "
                            "(09:00-17:00), then message the attendee the time: "
                            + "; ".join(f"{t} on {d}" for t, _, d in self.meetings) + ".")
        self.tools = [
            ToolSpec("find_free_slot", "earliest free hour on a day", {"day": "str"}),
            ToolSpec("add_event", "add an event", {"day": "str", "hour": "int", "title": "str"}),
            ToolSpec("delete_event", "remove an event", {"day": "str", "hour": "int"}),
            ToolSpec("send_message", "send a message", {"to": "str", "text": "str"}),
        ]
        for title, who, day in self.meetings:
            self.subgoals.append(Subgoal(
                key=title, intent=f"schedule '{title}' on {day}",
                builders=[fixed("find_free_slot", {"day": day}), _add_meeting(day, title),
                          _notify_attendee(who, title, day)],
                truth=True,
            ))

    def state(self) -> Any:
        """The calendar and the outbox of sent messages."""
        return {"events": self.events, "outbox": self.outbox}

    def tool_find_free_slot(self, day: str) -> Result:
        """Tool: the earliest free hour of a day between 09:00 and 17:00 (the value), if any."""
        if day not in self.events:
            return Result(f"Error: unknown day '{day}'", error=True)
        busy = {h for h, _, _ in self.events[day]}
        free = next((h for h in range(9, 17) if h not in busy), None)
        if free is None:
            return Result(f"No free slot on {day}.", value=None)
        return Result(f"Earliest free slot on {day}: {free:02d}:00", value=free)

    def tool_add_event(self, day: str, hour: Any, title: str) -> Result:
        """Tool: add a one-hour event; an error on a conflict or an hour that is not an integer."""
        if day not in self.events or not isinstance(hour, int):
            return Result(f"Error: invalid day or hour ({day}, {hour})", error=True)
        if any(h == hour for h, _, _ in self.events[day]):
            return Result(f"Error: conflict at {hour:02d}:00 on {day}", error=True)
        self.events[day].append([hour, 1, title])
        self.events[day].sort()
        return Result(f"Added '{title}' on {day} at {hour:02d}:00.", value=f"{day} {hour:02d}:00")

    def tool_delete_event(self, day: str, hour: int) -> Result:
        """Tool: delete the events at an hour (pre-existing busy blocks stay)."""
        before = len(self.events.get(day, []))
        self.events[day] = [e for e in self.events.get(day, []) if e[0] != hour or e[2] == "busy"]
        if len(self.events[day]) == before:
            return Result(f"Error: nothing to delete at {hour} on {day}", error=True)
        return Result(f"Deleted event at {hour:02d}:00 on {day}.", value=True)

    def tool_send_message(self, to: str, text: str) -> Result:
        """Tool: append a message to the outbox."""
        self.outbox.append([to, text])
        return Result(f"Message sent to {to}.", value=True)

    def corrupt(self, call: Call, rng: random.Random) -> tuple[Call, str]:
        """A meeting at a later hour (`wrong_time`), a message to someone else, or a slot on another day.

        The error categories are `wrong_time`, `wrong_recipient` and `wrong_day`.
        """
        if call.name == "add_event" and isinstance(call.args["hour"], int):
            return Call("add_event", {**call.args, "hour": call.args["hour"] + rng.choice([1, 2, 3])}), "wrong_time"
        if call.name == "send_message":
            return Call("send_message", {**call.args, "to": make_name(rng)}), "wrong_recipient"
        other_day = rng.choice([d for d in self.DAYS if d != call.args["day"]])
        return Call("find_free_slot", {"day": other_day}), "wrong_day"

    def repair_calls(self, wrong: Call, right: Call, wrong_result: Result) -> list[Call]:
        """Delete a meeting added at the wrong hour."""
        if wrong.name == "add_event" and not wrong_result.error:
            return [Call("delete_event", {"day": wrong.args["day"], "hour": wrong.args["hour"]})]
        return []

    def final_call(self, beliefs: dict[str, Any]) -> Call:
        """Tell the requester that every meeting is scheduled."""
        return Call("send_message", {"to": "requester", "text": f"All {len(self.meetings)} meetings are scheduled."})

    def reward(self, final: Result) -> float:
        """Fraction of meetings booked once, in the earliest free slot, with the attendee told the time."""
        ok = 0
        for title, who, day in self.meetings:
            ev = [e for e in self.events[day] if e[2] == title]
            if len(ev) == 1:
                hour = ev[0][0]
                earlier_free = [h for h in range(9, hour) if not any(e[0] == h for e in self.events[day])]
                told = [who, f"Booked '{title}' on {day} at {hour:02d}:00."] in self.outbox
                ok += (not earlier_free) and told
        return ok / len(self.meetings)


def _add_meeting(day: str, title: str) -> Callable[[list[Any]], Call]:
    """The chain link that books a meeting at the free hour the previous call found."""
    return lambda values: Call("add_event", {"day": day, "hour": values[0], "title": title})


def _notify_attendee(who: str, title: str, day: str) -> Callable[[list[Any]], Call]:
    """The chain link that messages the attendee the time of the meeting just booked."""
    return lambda values: Call("send_message", {"to": who, "text": f"Booked '{title}' on {day} at {values[0]:02d}:00."})


# domain -> the world of one task, built from (rng, number of goals)
WORLDS: dict[str, Callable[[random.Random, int], Environment]] = {
    "search": SearchWorld,
    "engineering": EngineeringWorld,
    "science": ScienceWorld,
    "instruction": InstructionWorld,
    "tool_calling": BookingWorld,
    "general": CalendarWorld,
}
