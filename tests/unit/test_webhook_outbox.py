"""The webhooks' delivery rules (b2bua/webhooks/outbox.py) with a fake clock: order per
call, lanes, backoff, the queue's bound, giving up, reconfiguration, a receiver down for
30 s; and the service's signature and dead-letter file."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from b2bua.webhooks.outbox import (
    DeadLetter,
    Delivery,
    Event,
    Outbox,
    Receiver,
    Settings,
    merge_reports,
)
from b2bua.webhooks.service import DeadLetterFile, sign

HOOK = Receiver(1, "crm", "http://127.0.0.1:9/hook", "s" * 16)


def outbox(*receivers: Receiver, **settings: float) -> Outbox:
    ids = itertools.count(1)
    box = Outbox(Settings(**settings),  # type: ignore[arg-type]
                 new_id=lambda: f"d{next(ids)}")
    box.configure(receivers or [HOOK], 0.0)
    return box


def event(n: int, kind: str = "call.start", key: str = "call-a", at: float = 0.0) -> Event:
    return Event(f"e{n}", kind, key, at, json.dumps({"n": n}).encode())


def number(delivery: Delivery) -> int:
    return int(json.loads(delivery.event.body)["n"])


class Receiving:
    """Drives an outbox through time: events added when their time comes, each due
    delivery answered at once, by a receiver that is up when ``up(now)`` says so."""

    def __init__(self, box: Outbox, up: Callable[[float], bool]) -> None:
        self.box, self.up = box, up
        self.delivered: list[Delivery] = []
        self.dead: list[DeadLetter] = []
        self.attempt_times: list[float] = []

    def run(self, events: list[tuple[float, Event]], until: float, step: float = 0.05) -> None:
        waiting = sorted(events, key=lambda pair: pair[0])
        now = 0.0
        while now <= until:
            while waiting and waiting[0][0] <= now:
                self.dead += self.box.add(waiting.pop(0)[1], now)
            for delivery, _receiver in self.box.due(now):
                self.attempt_times.append(now)
                if self.up(now):
                    self.box.succeeded(delivery, 204, now)
                    self.delivered.append(delivery)
                else:
                    self.dead += self.box.failed(delivery, "connection refused", None, now)
            now = round(now + step, 6)


def test_one_calls_events_go_in_order_one_at_a_time() -> None:
    box = outbox(lanes=4)
    for n, kind in enumerate(("call.start", "call.answer", "call.end")):
        box.add(event(n, kind), 0.0)
    first = box.due(0.0)
    assert [number(d) for d, _ in first] == [0]  # the next waits for its answer
    assert box.due(0.0) == []
    box.succeeded(first[0][0], 200, 0.1)
    (second,) = box.due(0.1)
    assert number(second[0]) == 1
    assert box.snapshot(0.2)[0]["queued"] == 2 and box.snapshot(0.2)[0]["in_flight"] == 1


def test_calls_go_in_parallel_over_the_lanes() -> None:
    box = outbox(lanes=4)
    for n in range(40):
        box.add(event(n, key=f"call-{n}"), 0.0)
    sent = box.due(0.0)
    assert len(sent) == 4 and len({d.lane for d, _ in sent}) == 4
    one_lane = outbox(lanes=1)
    for n in range(5):
        one_lane.add(event(n, key=f"call-{n}"), 0.0)
    assert len(one_lane.due(0.0)) == 1


def test_a_key_stays_in_its_lane_when_the_lane_count_changes() -> None:
    box = outbox(lanes=1)
    box.add(event(0, key="call-x"), 0.0)
    box.settings = Settings(lanes=8)
    box.add(event(1, "call.answer", key="call-x"), 0.0)
    (only,) = box.due(0.0)  # both in lane 0: the answer waits for the start
    assert number(only[0]) == 0
    box.succeeded(only[0], 200, 0.0)
    (next_one,) = box.due(0.0)
    assert number(next_one[0]) == 1


def test_backoff_doubles_to_its_cap_and_the_same_delivery_goes_again() -> None:
    box = outbox(backoff_max=8)
    box.add(event(0), 0.0)
    now, waits, ids = 0.0, [], set()
    for _ in range(6):
        (sent,) = box.due(now)
        ids.add(sent[0].id)
        assert box.failed(sent[0], "refused", None, now) == []
        wake = box.wake_at()
        assert wake is not None and box.due(wake - 0.001) == []
        waits.append(wake - now)
        now = wake
    assert waits == [1, 2, 4, 8, 8, 8]
    assert len(ids) == 1  # one delivery id over every attempt
    (sent,) = box.due(now)
    assert sent[0].attempts == 7
    box.succeeded(sent[0], 200, now)
    state = box.snapshot(now)[0]
    assert (state["delivered"], state["failed_attempts"], state["queued"]) == (1, 6, 0)
    assert state["last_status"] == 200 and state["last_error"] == "refused"


def test_a_full_queue_sends_the_new_event_to_the_dead_letters() -> None:
    box = outbox(queue_size=3)
    assert all(box.add(event(n, key=f"c{n}"), 0.0) == [] for n in range(3))
    (dead,) = box.add(event(3, key="c3"), 0.0)
    assert (dead.reason, number(dead.delivery), dead.receiver.name) == ("overflow", 3, "crm")
    assert box.snapshot(0.0)[0]["dead_lettered"] == 1 and box.pending() == 3


def test_an_event_is_given_up_after_the_retry_time_with_those_as_old_behind_it() -> None:
    box = outbox(retry_seconds=60, backoff_max=30, lanes=1)
    for n in range(3):
        box.add(event(n, key="call-a", at=n * 10.0), n * 10.0)
    receiving = Receiving(box, up=lambda now: False)
    receiving.run([], until=100)
    # The head failed at ~61 s: it and the second (queued at 10 s, 51 s old) stay until
    # an attempt at 60 s or more after each was queued.
    assert [number(d.delivery) for d in receiving.dead] == [0, 1, 2]
    assert all(d.reason == "expired" for d in receiving.dead)
    assert receiving.dead[0].at >= 60 and receiving.dead[2].at >= 80
    assert box.pending() == 0


def test_a_receiver_down_30_s_gets_everything_in_order_once_back() -> None:
    box = outbox(lanes=4, backoff_max=5)
    calls = [f"call-{n}" for n in range(20)]
    events = []
    for n, call in enumerate(calls):
        start = n * 2.0  # a call every 2 s, each 3 events a second apart
        for step, kind in enumerate(("call.start", "call.answer", "call.end")):
            events.append((start + step, event(n * 3 + step, kind, call, start + step)))
    receiving = Receiving(box, up=lambda now: not 10 <= now < 40)
    receiving.run(events, until=60)
    assert receiving.dead == []
    assert sorted(number(d) for d in receiving.delivered) == list(range(60))
    for call in calls:
        kinds = [d.event.type for d in receiving.delivered if d.event.key == call]
        assert kinds == ["call.start", "call.answer", "call.end"], call
    # Back within the backoff's cap of the receiver's return, nothing stuck.
    assert max(t for t in receiving.attempt_times) < 46
    assert box.snapshot(60)[0]["queued"] == 0
    assert box.snapshot(60)[0]["failed_attempts"] > 0


def test_event_types_a_receiver_takes() -> None:
    calls_only = Receiver(2, "billing", "http://x/", "k" * 16, frozenset({"call.end"}))
    box = outbox(HOOK, calls_only)
    box.add(event(0, "call.start"), 0.0)
    box.add(event(1, "call.end", key="call-b"), 0.0)
    box.add(event(2, "registration", key="1001"), 0.0)
    sent = box.due(0.0)
    by_receiver = sorted((r.name, d.event.type) for d, r in sent)
    assert ("billing", "call.end") in by_receiver and ("billing", "call.start") not in \
        by_receiver
    assert box.wants("call.end") and box.wants("registration")
    assert not Outbox().wants("call.end")


def test_removed_and_disabled_receivers_give_up_their_queue() -> None:
    other = Receiver(2, "other", "http://x/", "k" * 16)
    box = outbox(HOOK, other)
    box.add(event(0), 0.0)
    dead = box.configure([HOOK, Receiver(2, "other", "http://x/", "k" * 16,
                                          enabled=False)], 1.0)
    assert [(d.receiver.name, d.reason) for d in dead] == [("other", "disabled")]
    dead = box.configure([], 2.0)
    assert [(d.receiver.name, d.reason) for d in dead] == [("crm", "removed")]
    assert box.pending() == 0 and box.snapshot(2.0) == []


def test_a_new_url_keeps_the_queue_and_is_used_from_the_next_attempt() -> None:
    box = outbox()
    box.add(event(0), 0.0)
    (sent,) = box.due(0.0)
    box.failed(sent[0], "refused", 503, 0.0)
    moved = Receiver(1, "crm", "http://127.0.0.1:10/hook", "t" * 16)
    assert box.configure([moved], 0.5) == []
    (again,) = box.due(1.0)
    assert again[1].url == moved.url and again[0] is sent[0]


def test_shutdown_drains_everything() -> None:
    box = outbox()
    for n in range(3):
        box.add(event(n, key=f"c{n}"), 0.0)
    assert {d.reason for d in box.drain("shutdown", 1.0)} == {"shutdown"}
    assert box.pending() == 0


def test_reports_of_several_workers_add_up() -> None:
    one = {"id": 1, "queued": 2, "delivered": 5, "failed_attempts": 1, "dead_lettered": 0,
           "last_status": 500, "last_error": "HTTP 500", "last_error_at": 10.0,
           "last_attempt_at": 10.0, "last_delivered_at": 9.0, "oldest_queued_age": 3.0}
    two = {**one, "queued": 1, "delivered": 7, "last_status": 204, "last_attempt_at": 12.0,
           "last_error": "old", "last_error_at": 1.0, "last_delivered_at": 12.0,
           "oldest_queued_age": 1.0}
    (merged,) = merge_reports([[one], [two]])
    assert (merged["queued"], merged["delivered"], merged["failed_attempts"]) == (3, 12, 2)
    assert (merged["last_status"], merged["last_error"]) == (204, "HTTP 500")
    assert (merged["last_delivered_at"], merged["oldest_queued_age"]) == (12.0, 3.0)


def test_signature_is_hmac_sha256_of_time_dot_body() -> None:
    body = b'{"id":"x"}'
    expected = hmac.new(b"secret-key", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("secret-key", 1700000000, body) == f"t=1700000000,v1={expected}"


def test_dead_letter_file_holds_the_event_and_stops_at_its_cap(tmp_path: Path) -> None:
    cap = [10_000]
    path = tmp_path / "var" / "webhooks-dead.jsonl"
    letters = DeadLetterFile(path, lambda: cap[0])
    box = outbox(queue_size=1)
    box.add(event(0), 0.0)
    dead = box.add(event(1, key="c1"), 5.0)
    letters.write(dead)
    (line,) = path.read_text().splitlines()
    record = json.loads(line)
    assert (record["reason"], record["webhook"], record["event"]) == ("overflow", "crm",
                                                                      {"n": 1})
    assert record["delivery"] == dead[0].delivery.id and record["url"] == HOOK.url
    cap[0] = len(line) + 10  # no room for another
    letters.write(box.add(event(2, key="c2"), 6.0))
    assert len(path.read_text().splitlines()) == 1
    assert letters.dropped[HOOK.id] == 1


@pytest.mark.parametrize("lanes", [1, 3])
def test_nothing_is_lost_with_a_flapping_receiver(lanes: int) -> None:
    box = outbox(lanes=lanes, backoff_max=2)
    events = [(n * 0.1, event(n, key=f"call-{n % 7}", at=n * 0.1)) for n in range(200)]
    receiving = Receiving(box, up=lambda now: int(now) % 3 != 0)
    receiving.run(events, until=80)
    assert receiving.dead == [] and box.pending() == 0
    assert sorted(number(d) for d in receiving.delivered) == list(range(200))
    for key in {e.key for _, e in events}:
        got = [number(d) for d in receiving.delivered if d.event.key == key]
        assert got == sorted(got)
