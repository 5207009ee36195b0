"""Concurrent calls per gateway and phone, calls per vendor, vendors' Retry-After holds
and which upstream registrations hold: what admission and routing decide on, exact
across the signalling workers.

The numbers live in a :class:`~b2bua._tally.Tally`, a table in shared memory with one
column per worker (``b2bua/_tally.c``). With one worker it is private memory and the
same code runs. A key is a kind and a configuration id.

A node of a cluster with Redis (docs/cluster.md) also has ``shared``: what this node
counts is written there too, the other nodes' counts are added to every read, and an
origin's capacity is checked across the cluster by :meth:`CallCounts.admit_shared`.

Call rates (calls per second with a burst, per mapping gateway, phone, vendor as an
origin, and routing gateway) are kept apart from the counts, each limited thing under a
kind of its own (``rate_gateway``...): one GCRA deadline per key that every worker moves
(:meth:`CallCounts.pace`, ``Tally.pace``), and across a cluster one in Redis
(:meth:`CallCounts.pace_shared`).
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
          "retry_ms": 6, "upstream": 7,
          # call rates: a GCRA deadline per limited thing (Tally.pace), never a count
          "rate_gateway": 8, "rate_phone": 9, "rate_vendor": 10, "rate_routing": 11}
_ID_BITS = 56
RATE_KINDS = ("gateway", "phone", "vendor", "routing")  # what a call rate may limit
MAX_INTERVAL_US = 86_400_000_000  # a rate below one call a day counts as one a day
MAX_BURST = 10_000  # keeps (burst x interval) + Redis's clock exact in Lua's doubles

Key = tuple[str, int]


class CallCounts:
    def __init__(self, fd: int | None = None, workers: int = 1, worker: int = 0) -> None:
        self._tally = map_table(fd, workers, worker, SLOTS)
        self.overflows = 0
        self.shared: SharedCounts | None = None  # set by the engine of a cluster node
        # Per limited thing: its rate and burst, and as Tally.pace takes them.
        self._paced: dict[Key, tuple[float, int, int, int, int]] = {}

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

    def pace(self, key: Key, rate: float, burst: int, now: float) -> float:
        """A call under ``key`` (``("gateway", id)``, ``("phone", id)``, ``("vendor",
        id)``, ``("routing", id)``) at ``rate`` calls per second with ``burst``: 0.0 when
        it is admitted (and counted against the rate), else the seconds until one would
        be (nothing counted). Exact across this node's workers; ``now`` is seconds of a
        clock they share (``time.monotonic()``). ValueError for a rate not above 0 or a
        burst below 1."""
        paced = self._paced.get(key)
        if paced is None or paced[0] != rate or paced[1] != burst:
            # Worked out once per limited thing and limit (every call would otherwise).
            if len(self._paced) >= SLOTS:
                self._paced.clear()
            interval_us, capped = pacing(rate, burst)
            paced = self._paced[key] = (rate, burst, interval_us, capped,
                                        self._key(_rate_key(key)))
        now_us = min(max(round(now * 1_000_000), -(1 << 63)), (1 << 63) - 1)
        try:
            wait_us = int(self._tally.pace(paced[4], now_us, paced[2], paced[3]))
        except OverflowError:  # the table is full
            self._overflow(_rate_key(key))  # as for counts: the call goes on, unpaced
            return 0.0
        return wait_us / 1_000_000

    async def pace_shared(self, key: Key, rate: float, burst: int, now: float) -> float:
        """:meth:`pace` across the cluster's live nodes when there is one: one deadline in
        Redis on Redis's own clock (a round trip). While Redis is unreachable, slow or
        rebuilding, this node decides on the tally with its share of the rate and burst
        (``shares.pace_share``); ``now`` is only used then."""
        interval_us, burst = pacing(rate, burst)
        rate_key = _rate_key(key)
        shared = self.shared
        if shared is None:
            return self._pace(rate_key, interval_us, burst, now)
        return await shared.pace(
            key[0], key[1], interval_us, burst,
            lambda share_us, share_burst: self._pace(rate_key, share_us, share_burst, now))

    def _pace(self, rate_key: Key, interval_us: int, burst: int, now: float) -> float:
        now_us = min(max(round(now * 1_000_000), -(1 << 63)), (1 << 63) - 1)
        try:
            wait_us = int(self._tally.pace(self._key(rate_key), now_us, interval_us, burst))
        except OverflowError:  # the table is full
            self._overflow(rate_key)  # as for counts: the call goes on, unpaced
            return 0.0
        return wait_us / 1_000_000

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


def _rate_key(key: Key) -> Key:
    """Where a limited thing's call rate is kept: a kind of its own, apart from counts."""
    if key[0] not in RATE_KINDS:
        raise ValueError(f"no call rate for {key[0]!r}: one of {', '.join(RATE_KINDS)}")
    return "rate_" + key[0], key[1]


def pacing(rate: float, burst: int) -> tuple[int, int]:
    """A rate (calls per second) and burst as ``Tally.pace`` and the Redis script take
    them: the interval in whole microseconds (at least 1, at most a day) and the burst
    (at most ``MAX_BURST``). ValueError for a rate not above 0 (NaN too) or a burst
    below 1."""
    if not rate > 0:
        raise ValueError(f"a call rate must be above 0, not {rate!r}")
    if burst < 1:
        raise ValueError(f"a burst must be at least 1, not {burst!r}")
    interval = 1_000_000 / rate
    interval_us = MAX_INTERVAL_US if interval >= MAX_INTERVAL_US else max(1, round(interval))
    return interval_us, min(int(burst), MAX_BURST)
