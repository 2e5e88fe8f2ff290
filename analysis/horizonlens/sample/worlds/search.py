"""The "search" world: a document collection with keyword search; gather one fact per entity, then answer."""

from __future__ import annotations

import random
import re
from typing import Any

from horizonlens.sample.world import Call, Environment, Result, Subgoal, ToolSpec, fixed, make_name

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
