"""Bounded security state: challenge sessions, failure counts, suspensions, log throttle.

Every table here has a fixed maximum size; at the bound the oldest entry is evicted
(least recently touched first), so a flood of distinct sources costs bounded memory.
What eviction means is documented per table in docs/security.md.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

from b2bua._tally import Tally
from b2bua.shared_tables import text_key

K = TypeVar("K")
V = TypeVar("V")

SESSION_LIMIT = 50_000
FAILURE_LIMIT = 50_000
SUSPENSION_LIMIT = 50_000
LOG_LIMIT = 10_000
# With several signalling workers: failure counts and suspensions in shared memory, one
# slot per terminal and kind (b2bua/_tally.c, direct mapped: a flood replaces entries).
SECURITY_SLOTS = 1 << 17


class BoundedMap(Generic[K, V]):
    """An LRU map: ``get`` and ``put`` refresh an entry; the least recent goes first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data: OrderedDict[K, V] = OrderedDict()
        self.evictions = 0

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.capacity:
            self._data.popitem(last=False)
            self.evictions += 1

    def pop(self, key: K) -> V | None:
        return self._data.pop(key, None)

    def items(self) -> list[tuple[K, V]]:
        return list(self._data.items())

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


@dataclass(slots=True)
class AuthSession:
    """One challenge/response exchange: same Call-ID and From tag (or registration)."""

    started: float
    challenges: int = 0


@dataclass(frozen=True, slots=True)
class Suspension:
    terminal: str  # account or gateway username
    source_ip: str
    kind: str  # "authentication" or "registration"
    since: float
    until: float
    failures: int


Terminal = tuple[str, str]  # (username, source IP)


class SuspensionTable:
    """Failure counts and suspensions per terminal: a username tried from one source IP.

    Keying by source IP as well as username means a guessing storm against an
    account suspends the guesser, not the account's legitimate device elsewhere.
    """

    def __init__(self) -> None:
        self.failures: BoundedMap[tuple[str, Terminal], int] = BoundedMap(FAILURE_LIMIT)
        self.suspended: BoundedMap[Terminal, Suspension] = BoundedMap(SUSPENSION_LIMIT)
        # The suspension (its end, in ms) each terminal was last told about.
        self.told: BoundedMap[Terminal, int] = BoundedMap(SUSPENSION_LIMIT)
        self.created = 0
        self.shared: Tally | None = None

    def share(self, table: Tally) -> None:
        """Count failures and suspensions in a table every signalling worker sees (a
        guesser's new Call-IDs land on every worker). The local maps keep what this
        worker decided, for the API."""
        self.shared = table

    def check(self, terminal: Terminal, now: float) -> Suspension | None:
        entry = self.suspended.get(terminal)
        if entry is not None and entry.until <= now:
            self.suspended.pop(terminal)
            entry = None
        if entry is None and self.shared is not None:
            until = self.shared.maximum(text_key("suspended", *terminal)) / 1000
            if until > now:  # decided by another worker, which lists it
                return Suspension(terminal[0], terminal[1], "authentication", now, until, 0)
        return entry

    def fail(self, kind: str, terminal: Terminal, max_failures: int, suspend_for: float,
             now: float) -> Suspension | None:
        """Count one failure; returns the new suspension when the limit is passed."""
        key = (kind, terminal)
        shared_key = text_key("failures", kind, *terminal)
        count = self._count_shared(shared_key)
        if count is None:
            count = (self.failures.get(key) or 0) + 1
        if count <= max_failures or suspend_for <= 0:
            self.failures.put(key, count)
            return None
        self.failures.pop(key)
        entry = Suspension(terminal[0], terminal[1], kind, now, now + suspend_for, count)
        self.suspended.put(terminal, entry)
        if self.shared is not None:
            self.shared.reset(shared_key)
            # A contended slot: the suspension holds on this worker alone.
            with contextlib.suppress(OverflowError):
                self.shared.store(text_key("suspended", *terminal), int(entry.until * 1000))
        self.created += 1
        return entry

    def tell_once(self, entry: Suspension) -> bool:
        """True the first time a suspension is to be answered: one 403 per terminal per
        suspension, so a guessing tool that keeps going gets nothing more to count."""
        terminal = (entry.terminal, entry.source_ip)
        # Within 1 ms: another worker reads the end back from whole milliseconds.
        until = int(entry.until * 1000)
        if self.shared is not None:
            key = text_key("told", *terminal)
            if self.shared.maximum(key) >= until - 1:
                return False
            with contextlib.suppress(OverflowError):
                self.shared.store(key, until)
                return True
        told = self.told.get(terminal)
        if told is not None and told >= until - 1:
            return False
        self.told.put(terminal, until)
        return True

    def succeed(self, kind: str, terminal: Terminal) -> None:
        self.failures.pop((kind, terminal))
        if self.shared is not None:
            self.shared.reset(text_key("failures", kind, *terminal))

    def lift(self, username: str, source_ip: str | None = None) -> int:
        """Lift what this worker decided (the API asks every worker), and with a source
        IP also a shared suspension whose worker has since restarted."""
        lifted = 0
        for terminal, _entry in self.suspended.items():
            if terminal[0] == username and (source_ip is None or terminal[1] == source_ip):
                self.suspended.pop(terminal)
                if self.shared is not None:
                    self.shared.reset(text_key("suspended", *terminal))
                lifted += 1
        if not lifted and self.shared is not None and source_ip is not None:
            key = text_key("suspended", username, source_ip)
            if self.shared.maximum(key) > time.time() * 1000:
                self.shared.reset(key)
                lifted = 1
        return lifted

    def _count_shared(self, key: int) -> int | None:
        """One more failure under ``key``: the total over every worker, or None when
        there is no shared table or its slot is contended (then counted here alone)."""
        if self.shared is None:
            return None
        try:
            return int(self.shared.add(key, 1))
        except OverflowError:
            return None

    def active(self, now: float) -> list[Suspension]:
        return [s for _t, s in self.suspended.items() if s.until > now]


class LogThrottle:
    """At most one log line per source per interval."""

    def __init__(self) -> None:
        self._last: BoundedMap[str, float] = BoundedMap(LOG_LIMIT)
        self.suppressed = 0

    def allow(self, source: str, interval: float, now: float) -> bool:
        last = self._last.get(source)
        if last is not None and now - last < interval:
            self.suppressed += 1
            return False
        self._last.put(source, now)
        return True


@dataclass
class SecurityCounters:
    """What the policy did, by outcome and reason (``/api/v1/security/stats``)."""

    dropped: Counter[str]
    rejected: Counter[str]
    challenged: Counter[str]
    authenticated: Counter[str]
    suspended: Counter[str]

    @classmethod
    def new(cls) -> SecurityCounters:
        return cls(Counter(), Counter(), Counter(), Counter(), Counter())

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {
            "dropped": dict(self.dropped),
            "rejected": dict(self.rejected),
            "challenged": dict(self.challenged),
            "authenticated": dict(self.authenticated),
            "suspended": dict(self.suspended),
        }
