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


class LocalBoard:
    """What a lone worker knows beyond its own decisions: nothing. The board a
    :class:`SuspensionTable` uses when it is the only signalling worker (no key is
    hashed: that is the shared table's business)."""

    def count(self, kind: str, terminal: Terminal, local: int) -> int:
        """One more failure; the count to judge by. ``local`` is this worker's own count
        with the new failure."""
        return local

    def reset_failures(self, kind: str, terminal: Terminal) -> None:
        return None

    def failed(self, kind: str, terminal: Terminal, max_failures: int, suspend_for: float,
               now: float) -> None:
        """A failure counted here and judged below the limit (a cluster node also counts
        it across the nodes: docs/cluster.md)."""
        return None

    def held_elsewhere(self, now: float) -> list[Suspension]:
        """Suspensions another node decided, for the API's list."""
        return []

    def until(self, terminal: Terminal) -> float:
        """The end of a suspension another worker decided (epoch seconds), 0 for none."""
        return 0.0

    def publish(self, terminal: Terminal, until: float) -> None:
        return None

    def lift(self, terminal: Terminal) -> None:
        return None

    def lift_held(self, terminal: Terminal, now: float) -> bool:
        """Lift a suspension only the board still holds (its worker restarted)."""
        return False

    def first_telling(self, terminal: Terminal, until_ms: int,
                      told: BoundedMap[Terminal, int]) -> bool:
        """Whether a suspension ending at ``until_ms`` is told for the first time."""
        last = told.get(terminal)
        if last is not None and last >= until_ms - 1:  # within 1 ms: read back from ms
            return False
        told.put(terminal, until_ms)
        return True


class SharedBoard(LocalBoard):
    """Failure counts and suspensions in a table every signalling worker maps (a
    guesser's new Call-IDs land on every worker): direct mapped, so a contended slot
    falls back to what this worker alone knows."""

    def __init__(self, table: Tally) -> None:
        self.table = table

    def count(self, kind: str, terminal: Terminal, local: int) -> int:
        try:
            return int(self.table.add(text_key("failures", kind, *terminal), 1))
        except OverflowError:
            return local

    def reset_failures(self, kind: str, terminal: Terminal) -> None:
        self.table.reset(text_key("failures", kind, *terminal))

    def until(self, terminal: Terminal) -> float:
        return int(self.table.maximum(text_key("suspended", *terminal))) / 1000

    def publish(self, terminal: Terminal, until: float) -> None:
        # A contended slot: the suspension holds on this worker alone.
        with contextlib.suppress(OverflowError):
            self.table.store(text_key("suspended", *terminal), int(until * 1000))

    def lift(self, terminal: Terminal) -> None:
        self.table.reset(text_key("suspended", *terminal))

    def lift_held(self, terminal: Terminal, now: float) -> bool:
        key = text_key("suspended", *terminal)
        if self.table.maximum(key) > now * 1000:
            self.table.reset(key)
            return True
        return False

    def first_telling(self, terminal: Terminal, until_ms: int,
                      told: BoundedMap[Terminal, int]) -> bool:
        key = text_key("told", *terminal)
        if self.table.maximum(key) >= until_ms - 1:
            return False
        try:
            self.table.store(key, until_ms)
        except OverflowError:
            return super().first_telling(terminal, until_ms, told)
        return True


class SuspensionTable:
    """Failure counts and suspensions per terminal: a username tried from one source IP.

    Keying by source IP as well as username means a guessing storm against an
    account suspends the guesser, not the account's legitimate device elsewhere. The
    maps here hold this worker's counts and decisions (the API lists them); ``board``,
    chosen when the engine is wired, holds what the other signalling workers see.
    """

    def __init__(self, board: LocalBoard | None = None) -> None:
        self.failures: BoundedMap[tuple[str, Terminal], int] = BoundedMap(FAILURE_LIMIT)
        self.suspended: BoundedMap[Terminal, Suspension] = BoundedMap(SUSPENSION_LIMIT)
        # The suspension (its end, in ms) each terminal was last told about.
        self.told: BoundedMap[Terminal, int] = BoundedMap(SUSPENSION_LIMIT)
        self.created = 0
        self.board = board if board is not None else LocalBoard()

    def check(self, terminal: Terminal, now: float) -> Suspension | None:
        entry = self.suspended.get(terminal)
        if entry is not None and entry.until <= now:
            self.suspended.pop(terminal)
            entry = None
        if entry is None:
            until = self.board.until(terminal)
            if until > now:  # decided by another worker, which lists it
                return Suspension(terminal[0], terminal[1], "authentication", now, until, 0)
        return entry

    def fail(self, kind: str, terminal: Terminal, max_failures: int, suspend_for: float,
             now: float) -> Suspension | None:
        """Count one failure; returns the new suspension when the limit is passed."""
        key = (kind, terminal)
        count = self.board.count(kind, terminal, (self.failures.get(key) or 0) + 1)
        if count <= max_failures or suspend_for <= 0:
            self.failures.put(key, count)
            if suspend_for > 0:
                self.board.failed(kind, terminal, max_failures, suspend_for, now)
            return None
        self.failures.pop(key)
        entry = Suspension(terminal[0], terminal[1], kind, now, now + suspend_for, count)
        self.suspended.put(terminal, entry)
        self.board.reset_failures(kind, terminal)
        self.board.publish(terminal, entry.until)
        self.created += 1
        return entry

    def tell_once(self, entry: Suspension) -> bool:
        """True the first time a suspension is to be answered: one 403 per terminal per
        suspension, so a guessing tool that keeps going gets nothing more to count."""
        return self.board.first_telling((entry.terminal, entry.source_ip),
                                        int(entry.until * 1000), self.told)

    def succeed(self, kind: str, terminal: Terminal) -> None:
        self.failures.pop((kind, terminal))
        self.board.reset_failures(kind, terminal)

    def lift(self, username: str, source_ip: str | None = None) -> int:
        """Lift what this worker decided (the API asks every worker), and with a source
        IP also a suspension only the board holds (its worker has since restarted)."""
        lifted = 0
        for terminal, _entry in self.suspended.items():
            if terminal[0] == username and (source_ip is None or terminal[1] == source_ip):
                self.suspended.pop(terminal)
                self.board.lift(terminal)
                lifted += 1
        if not lifted and source_ip is not None and self.board.lift_held(
                (username, source_ip), time.time()):
            lifted = 1
        return lifted

    def active(self, now: float) -> list[Suspension]:
        return [s for _t, s in self.suspended.items() if s.until > now] + \
            self.board.held_elsewhere(now)


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
