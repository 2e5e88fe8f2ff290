"""The "tool_calling" world: a stateful airline booking database (tau-bench-like); carry out customer requests."""

from __future__ import annotations

import random
from typing import Any

from horizonlens.sample.world import Call, Environment, Result, Subgoal, ToolSpec, fixed, make_name

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
