"""The webhooks' delivery rules, sans-IO: events and ``now`` in; the deliveries to send
now, when to look again, and the dead letters out. No sockets, clocks or threads here
(``b2bua/webhooks/service.py`` does the I/O); unit-tested with a fake clock
(``tests/unit/test_webhook_outbox.py``).

- Each receiver (a configured webhook) has a queue of its own, bounded at
  ``Settings.queue_size`` deliveries: an event that finds it full is a dead letter
  (``overflow``).
- The queue is split into ``Settings.lanes`` lanes, each delivered strictly in order, one
  request at a time, head of line: a delivery waits until the one before it in its lane is
  delivered or given up. An event goes to the lane of its key (a call's Call-ID, a phone's
  username): the lane that holds that key's earlier events while any wait, else one chosen
  by a hash of the key. So one call's events are never reordered, and calls go in parallel
  over the lanes.
- A failed attempt (no answer, or a status other than 2xx) makes its lane wait: 1 s, then
  twice as long after each failure in a row, at most ``Settings.backoff_max``; a delivery
  then goes again, the same one (same id). One that fails ``Settings.retry_seconds`` or
  more after it was queued is given up (a dead letter, ``expired``), and so are those
  behind it in its lane that have waited as long.
- A receiver removed or disabled: what it had queued are dead letters (``removed``,
  ``disabled``); it gets no more events. A changed URL or secret applies from the next
  attempt, the queue kept.
"""

from __future__ import annotations

import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

CALL_EVENTS = ("call.start", "call.answer", "call.end")
EVENT_TYPES = (*CALL_EVENTS, "registration")
BACKOFF_START = 1.0


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Settings:
    """The parameters the rules use (SS_WEBHOOK_..., read again on each round)."""

    queue_size: int = 10_000
    retry_seconds: float = 3600.0
    backoff_max: float = 30.0
    lanes: int = 4


@dataclass(frozen=True, slots=True)
class Receiver:
    """A configured webhook (the ``webhooks`` table)."""

    id: int
    name: str
    url: str
    secret: str
    events: frozenset[str] = frozenset()  # empty: every type
    enabled: bool = True

    def wants(self, kind: str) -> bool:
        return self.enabled and (not self.events or kind in self.events)


@dataclass(frozen=True, slots=True)
class Event:
    """One event, its body encoded once for every receiver."""

    id: str
    type: str
    key: str  # what orders it: the call's Call-ID, the phone's username
    at: float
    body: bytes


@dataclass(slots=True, eq=False)
class Delivery:
    """One event to one receiver; its id is the same on every attempt."""

    id: str
    event: Event
    receiver: int
    lane: int
    queued_at: float
    attempts: int = 0
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    delivery: Delivery
    receiver: Receiver
    reason: str  # overflow, expired, removed, disabled, shutdown
    at: float


@dataclass(slots=True, eq=False)
class _Lane:
    queue: deque[Delivery] = field(default_factory=deque)
    busy: bool = False  # its head is being sent
    retry_at: float = 0.0
    backoff: float = 0.0  # the last wait after a failure; 0 while it succeeds


@dataclass(slots=True, eq=False)
class _Target:
    receiver: Receiver
    lanes: list[_Lane] = field(default_factory=list)
    # Each key with deliveries waiting: its lane and how many.
    keys: dict[str, list[int]] = field(default_factory=dict)
    queued: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    dead_lettered: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_status: int | None = None
    last_attempt_at: float | None = None
    last_delivered_at: float | None = None


class Outbox:
    """Every receiver's queue."""

    def __init__(self, settings: Settings | None = None,
                 new_id: Callable[[], str] = _new_id) -> None:
        self.settings = settings or Settings()
        self._new_id = new_id
        self._targets: dict[int, _Target] = {}

    # -- configuration -----------------------------------------------------------------

    def configure(self, receivers: Iterable[Receiver], now: float) -> list[DeadLetter]:
        """Take the receivers as configured now; what the removed and the disabled ones
        had queued comes back as dead letters."""
        wanted = {r.id: r for r in receivers}
        dead: list[DeadLetter] = []
        for rid in [rid for rid in self._targets if rid not in wanted]:
            dead += self._drain(self._targets.pop(rid), "removed", now)
        for rid, receiver in wanted.items():
            target = self._targets.get(rid)
            if target is None:
                self._targets[rid] = _Target(receiver)
                continue
            target.receiver = receiver
            if not receiver.enabled:
                dead += self._drain(target, "disabled", now)
        return dead

    def receiver(self, rid: int) -> Receiver | None:
        target = self._targets.get(rid)
        return target.receiver if target is not None else None

    def receivers(self) -> list[Receiver]:
        return [t.receiver for t in self._targets.values()]

    def wants(self, kind: str) -> bool:
        """Whether any receiver takes events of ``kind``."""
        return any(t.receiver.wants(kind) for t in self._targets.values())

    # -- events in -----------------------------------------------------------------------

    def add(self, event: Event, now: float) -> list[DeadLetter]:
        """Queue ``event`` for every receiver that takes its type; a full queue's
        delivery comes back as a dead letter."""
        dead: list[DeadLetter] = []
        for target in self._targets.values():
            if not target.receiver.wants(event.type):
                continue
            delivery = Delivery(self._new_id(), event, target.receiver.id, 0, now)
            if target.queued >= self.settings.queue_size:
                dead.append(self._dead(target, delivery, "overflow", now))
                continue
            delivery.lane = self._lane_for(target, event.key)
            target.lanes[delivery.lane].queue.append(delivery)
            target.queued += 1
        return dead

    def _lane_for(self, target: _Target, key: str) -> int:
        held = target.keys.get(key)
        if held is not None:  # the key's earlier events wait there: after them
            held[1] += 1
            return held[0]
        lanes = max(1, self.settings.lanes)
        while len(target.lanes) < lanes:  # lanes are added, never taken away
            target.lanes.append(_Lane())
        lane = zlib.crc32(key.encode(errors="replace")) % lanes
        target.keys[key] = [lane, 1]
        return lane

    def _release(self, target: _Target, delivery: Delivery) -> None:
        target.queued -= 1
        key = delivery.event.key
        held = target.keys.get(key)
        if held is not None:
            held[1] -= 1
            if held[1] <= 0:
                del target.keys[key]

    # -- deliveries out --------------------------------------------------------------------

    def due(self, now: float) -> list[tuple[Delivery, Receiver]]:
        """The deliveries to send now (each lane's head, when the lane is not already
        sending it nor waiting after a failure), marked as being sent."""
        out: list[tuple[Delivery, Receiver]] = []
        for target in self._targets.values():
            for lane in target.lanes:
                if lane.queue and not lane.busy and lane.retry_at <= now:
                    lane.busy = True
                    delivery = lane.queue[0]
                    delivery.attempts += 1
                    out.append((delivery, target.receiver))
        return out

    def succeeded(self, delivery: Delivery, status: int, now: float) -> None:
        """The receiver answered ``delivery`` with a 2xx ``status``."""
        target = self._targets.get(delivery.receiver)
        if target is None:  # removed meanwhile (its queue is dead letters already)
            return
        target.last_status, target.last_attempt_at = status, now
        target.delivered += 1
        target.last_delivered_at = now
        lane = target.lanes[delivery.lane]
        lane.busy, lane.backoff, lane.retry_at = False, 0.0, 0.0
        if lane.queue and lane.queue[0] is delivery:
            lane.queue.popleft()
            self._release(target, delivery)

    def failed(self, delivery: Delivery, error: str, status: int | None,
               now: float) -> list[DeadLetter]:
        """``delivery`` failed (``status`` None: no answer). Its lane waits; it and those
        behind it that have waited ``retry_seconds`` come back as dead letters."""
        target = self._targets.get(delivery.receiver)
        if target is None:
            return []
        delivery.last_error = error
        target.failed_attempts += 1
        target.last_error, target.last_error_at = error, now
        target.last_status, target.last_attempt_at = status, now
        lane = target.lanes[delivery.lane]
        lane.busy = False
        lane.backoff = min(self.settings.backoff_max,
                           lane.backoff * 2 if lane.backoff else BACKOFF_START)
        lane.retry_at = now + lane.backoff
        dead: list[DeadLetter] = []
        if not (lane.queue and lane.queue[0] is delivery):
            return dead  # it was given up meanwhile (its receiver disabled)
        limit = self.settings.retry_seconds
        while lane.queue and now - lane.queue[0].queued_at >= limit:
            gone = lane.queue.popleft()
            self._release(target, gone)
            dead.append(self._dead(target, gone, "expired", now))
        return dead

    def wake_at(self) -> float | None:
        """When the next waiting lane may send (None: none waits)."""
        return min((lane.retry_at for target in self._targets.values()
                    for lane in target.lanes if lane.queue and not lane.busy), default=None)

    def pending(self) -> int:
        """Deliveries queued (being sent included)."""
        return sum(t.queued for t in self._targets.values())

    def in_flight(self) -> int:
        return sum(lane.busy for t in self._targets.values() for lane in t.lanes)

    def drain(self, reason: str, now: float) -> list[DeadLetter]:
        """Give up everything queued (the engine stops)."""
        dead: list[DeadLetter] = []
        for target in self._targets.values():
            dead += self._drain(target, reason, now)
        return dead

    def _drain(self, target: _Target, reason: str, now: float) -> list[DeadLetter]:
        dead = [self._dead(target, delivery, reason, now)
                for lane in target.lanes for delivery in lane.queue]
        for lane in target.lanes:
            lane.queue.clear()
            lane.backoff, lane.retry_at = 0.0, 0.0
        target.keys.clear()
        target.queued = 0
        return dead

    def _dead(self, target: _Target, delivery: Delivery, reason: str,
              now: float) -> DeadLetter:
        target.dead_lettered += 1
        return DeadLetter(delivery, target.receiver, reason, now)

    # -- state -----------------------------------------------------------------------------

    def snapshot(self, now: float) -> list[dict[str, Any]]:
        """Each receiver's delivery state (``GET /api/v1/webhooks``, ``delivery``)."""
        out: list[dict[str, Any]] = []
        for target in self._targets.values():
            heads = [lane.queue[0].queued_at for lane in target.lanes if lane.queue]
            out.append({
                "id": target.receiver.id,
                "queued": target.queued,
                "in_flight": sum(lane.busy for lane in target.lanes),
                "retrying_lanes": sum(1 for lane in target.lanes
                                      if lane.queue and lane.backoff > 0),
                "delivered": target.delivered,
                "failed_attempts": target.failed_attempts,
                "dead_lettered": target.dead_lettered,
                "last_status": target.last_status,
                "last_error": target.last_error,
                "last_error_at": target.last_error_at,
                "last_attempt_at": target.last_attempt_at,
                "last_delivered_at": target.last_delivered_at,
                "oldest_queued_age": round(max(0.0, now - min(heads)), 3) if heads else 0.0,
            })
        return out


# How the reports of several signalling workers add up: counters summed, ages and times
# the greatest, the last status and error the latest worker's.
_SUMMED = ("queued", "in_flight", "retrying_lanes", "delivered", "failed_attempts",
           "dead_lettered", "dead_letters_dropped")
_LATEST = ("last_error_at", "last_attempt_at", "last_delivered_at", "oldest_queued_age")


def merge_reports(reports: Iterable[Iterable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One delivery state per receiver from each signalling worker's ``snapshot``."""
    merged: dict[int, dict[str, Any]] = {}
    for report in reports:
        for item in report:
            have = merged.get(item["id"])
            if have is None:
                merged[item["id"]] = dict(item)
                continue
            for key in _SUMMED:
                if key in item:
                    have[key] = have.get(key, 0) + item[key]
            if (item.get("last_attempt_at") or 0) > (have.get("last_attempt_at") or 0):
                have["last_status"] = item.get("last_status")
            if (item.get("last_error_at") or 0) > (have.get("last_error_at") or 0):
                have["last_error"] = item.get("last_error")
            for key in _LATEST:
                values = [v for v in (have.get(key), item.get(key)) if v is not None]
                have[key] = max(values) if values else None
    return list(merged.values())
