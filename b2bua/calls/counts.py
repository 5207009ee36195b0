"""Concurrent calls per gateway and phone, calls per vendor, vendors' Retry-After holds
and which upstream registrations hold: what admission and routing decide on, exact
across the signalling workers.

The numbers live in a :class:`~b2bua._tally.Tally`, a table in shared memory with one
column per worker (``b2bua/_tally.c``). With one worker it is private memory and the
same code runs. A key is a kind and a configuration id.

A node of a cluster with Redis (docs/cluster.md) also has ``shared``: what this node
counts is written there too, the other nodes' counts are added to every read, and an
origin's capacity is checked across the cluster by :meth:`CallCounts.admit_shared`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from b2bua.shared_tables import map_table

if TYPE_CHECKING:
    from b2bua.cluster.shared_counts import SharedCounts

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
        self.shared: SharedCounts | None = None  # set by the engine of a cluster node

    @staticmethod
    def _key(key: Key) -> int:
        kind, ident = key
        return (_KINDS[kind] << _ID_BITS) | (ident & ((1 << _ID_BITS) - 1))

    def __getitem__(self, key: Key) -> int:
        """Calls now (``routing_total``: ever) under ``key``, every worker's together, and
        in a cluster every live node's."""
        total = int(self._tally.total(self._key(key)))
        shared = self.shared
        if shared is not None:
            total += shared.other(*key)
        return total

    async def admit_shared(self, key: Key, capacity: int | None) -> bool:
        """:meth:`admit`, with the capacity checked across the cluster's live nodes when
        there is one (a round trip to Redis; this node's share of it while Redis is
        unreachable)."""
        shared = self.shared
        if shared is None or capacity is None:
            return self.admit(key, capacity)
        slot = self._key(key)
        local = int(self._tally.total(slot))
        self._tally.add(slot, 1)  # ours at once: this node's reads see it meanwhile
        if await shared.admit(key[0], key[1], capacity, local):
            return True
        self._tally.add(slot, -1)
        return False

    def admit(self, key: Key, capacity: int | None) -> bool:
        """Count one more call under ``key`` unless that would pass ``capacity``."""
        try:
            if capacity is None:
                self._tally.add(self._key(key), 1)
                admitted = True
            else:
                admitted = bool(self._tally.admit(self._key(key), capacity))
        except OverflowError:
            self._overflow(key)
            return True
        if admitted and self.shared is not None:
            self.shared.changed(key[0], key[1], 1)
        return admitted

    def add(self, key: Key, delta: int) -> None:
        try:
            self._tally.add(self._key(key), delta)
        except OverflowError:
            self._overflow(key)
        if self.shared is not None:
            self.shared.changed(key[0], key[1], delta)

    def hold(self, key: Key, until: float) -> None:
        """Remember a deadline (a vendor's Retry-After); the latest any worker (any node)
        set wins."""
        self.publish(key, int(until * 1000))
        if self.shared is not None:
            self.shared.publish(key[0], key[1], int(until * 1000))

    def publish(self, key: Key, value: int) -> None:
        """Set this worker's value under ``key`` (a state only one worker knows, such as
        an upstream registration's, for the others to read as the total)."""
        try:
            self._tally.store(self._key(key), value)
        except OverflowError:
            self._overflow(key)

    def held_until(self, key: Key) -> float:
        """The deadline under ``key``, 0 when none was set."""
        latest = int(self._tally.maximum(self._key(key)))
        if self.shared is not None:
            latest = max(latest, self.shared.other_max(*key))
        return latest / 1000

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
