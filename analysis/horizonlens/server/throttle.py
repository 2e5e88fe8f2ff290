"""Slowing down password guessing: failed sign-ins per user name and per client address, shared by all sessions.

Each failed attempt is answered only after a pause (`FAIL_PAUSE_S`). After `FREE_FAILURES` failures
for one name (`FREE_FAILURES_ADDRESS` from one address: behind a proxy every client has the proxy's address,
and a few mistyped passwords must not lock the whole team out), further attempts for it are refused without
checking the password until a lock-out ends; each further failure doubles the lock-out, up to
`MAX_LOCK_S`. A success clears the name's count. Counts are forgotten after `FORGET_S` without failures.
The refusal says only when to try again, never whether the name exists (an unknown name is counted like a
known one).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

FREE_FAILURES = 5  # failures for one user name before a lock-out starts
FREE_FAILURES_ADDRESS = 25  # failures from one client address before a lock-out starts
FAIL_PAUSE_S = 1.0  # every failed attempt is answered this late
FIRST_LOCK_S = 2.0
MAX_LOCK_S = 300.0
FORGET_S = 3600.0


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class SignInThrottle:
    """The failure counts of one server process (thread-safe; `clock` is injectable for tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    @staticmethod
    def keys(name: str, address: str | None) -> list[str]:
        """The counters one attempt touches: the typed name (case-folded) and the client address."""
        out = [f"user:{name.strip().casefold()}"]
        if address:
            out.append(f"addr:{address}")
        return out

    def wait_s(self, name: str, address: str | None) -> float:
        """Seconds until an attempt for this name from this address is checked again (0: now)."""
        now = self._clock()
        with self._lock:
            self._forget(now)
            return max([0.0] + [self._records[k].locked_until - now for k in self.keys(name, address)
                                if k in self._records])

    def failed(self, name: str, address: str | None) -> None:
        """Count a failed attempt; past the free failures, lock the name and the address out for longer."""
        now = self._clock()
        with self._lock:
            for key in self.keys(name, address):
                rec = self._records.setdefault(key, _Record())
                rec.failures += 1
                rec.last = now
                free = FREE_FAILURES_ADDRESS if key.startswith("addr:") else FREE_FAILURES
                if rec.failures >= free:
                    lock = min(MAX_LOCK_S, FIRST_LOCK_S * 2 ** (rec.failures - free))
                    rec.locked_until = max(rec.locked_until, now + lock)

    def succeeded(self, name: str) -> None:
        """A successful sign-in clears the name's count (not the address's: others may guess from it)."""
        with self._lock:
            self._records.pop(self.keys(name, None)[0], None)

    def _forget(self, now: float) -> None:
        stale = [k for k, r in self._records.items() if now - r.last > FORGET_S and now >= r.locked_until]
        for k in stale:
            del self._records[k]
