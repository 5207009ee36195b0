"""Concurrent calls per gateway and phone, calls per vendor, vendors' Retry-After holds
and which upstream registrations hold: what admission and routing decide on, exact
across the signalling workers.

The numbers live in a :class:`~b2bua._tally.Tally`, a table in shared memory with one
column per worker (``b2bua/_tally.c``). With one worker it is private memory and the
same code runs. A key is a kind and a configuration id.
"""

from __future__ import annotations

import logging

from b2bua.shared_tables import map_table

log = logging.getLogger("b2bua.counts")

SLOTS = 1 << 18  # keys: every configured gateway and phone, once per kind
_KINDS = {"gateway": 1, "phone": 2, "vendor": 3, "routing": 4, "routing_total": 5,
          "retry_ms": 6, "upstream": 7}
_ID_BITS = 56

Key = tuple[str, int]


class CallCounts:
    def __init__(self, fd: int | None = None, workers: int = 1, worker: int = 0) -> None:
        self._tally = map_table(fd, workers, worker, SLOTS)
        self.overflows = 0

    @staticmethod
    def _key(key: Key) -> int:
        kind, ident = key
        return (_KINDS[kind] << _ID_BITS) | (ident & ((1 << _ID_BITS) - 1))

    def __getitem__(self, key: Key) -> int:
        """Calls now (``routing_total``: ever) under ``key``, every worker's together."""
        return int(self._tally.total(self._key(key)))

    def admit(self, key: Key, capacity: int | None) -> bool:
        """Count one more call under ``key`` unless that would pass ``capacity``."""
        try:
            if capacity is None:
                self._tally.add(self._key(key), 1)
                return True
            return bool(self._tally.admit(self._key(key), capacity))
        except OverflowError:
            self._overflow(key)
            return True

    def add(self, key: Key, delta: int) -> None:
        try:
            self._tally.add(self._key(key), delta)
        except OverflowError:
            self._overflow(key)

    def hold(self, key: Key, until: float) -> None:
        """Remember a deadline (a vendor's Retry-After); the latest any worker set wins."""
        self.publish(key, int(until * 1000))

    def publish(self, key: Key, value: int) -> None:
        """Set this worker's value under ``key`` (a state only one worker knows, such as
        an upstream registration's, for the others to read as the total)."""
        try:
            self._tally.store(self._key(key), value)
        except OverflowError:
            self._overflow(key)

    def held_until(self, key: Key) -> float:
        """The deadline under ``key``, 0 when none was set."""
        return int(self._tally.maximum(self._key(key))) / 1000

    def clear_worker(self, worker: int) -> None:
        """A worker is down: what it counted ends with it."""
        self._tally.clear_column(worker)

    def usage(self) -> tuple[int, int]:
        used, slots = self._tally.used()
        return int(used), int(slots)

    def _overflow(self, key: Key) -> None:
        # Only reachable with over SLOTS configured gateways and phones: the call goes on
        # uncounted rather than failing.
        self.overflows += 1
        if self.overflows == 1:
            log.error("call counter table full (%d keys): %s not counted", SLOTS, key)
