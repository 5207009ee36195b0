"""The call ladder store (b2bua/ladders.py) with a fake clock: both legs under one call,
the keep policy, the per-call cap, the size and age limits and what they count."""

from __future__ import annotations

from typing import Any

import pytest

from b2bua.ladders import (
    ALL,
    FAILED,
    HEAD,
    LINGER,
    MAX_MESSAGE,
    OFF,
    OVERHEAD,
    TAIL,
    Ladder,
    LadderStore,
)
from b2bua.sip.peek import call_id_of, first_line
from b2bua.sip.peer import Peer

CALLER = Peer("udp", "192.0.2.10", 5060)
VENDOR = Peer("udp", "198.51.100.7", 5070)
VENDOR2 = Peer("tcp", "2001:db8::7", 5080)


def sip(first: str, call_id: str, size: int = 0) -> bytes:
    head = f"{first}\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK1\r\nCall-ID: {call_id}\r\n"
    return (head + "X-Pad: " + "p" * size + "\r\n\r\n").encode()


def start(store: LadderStore, no: int, call_id: str = "", at: float = 100.0) -> Ladder:
    """A call's INVITE arriving and its ladder opening, as the stack and the switchboard
    do it: the INVITE is seen before the call exists."""
    call_id = call_id or f"a-{no}"
    store.capture(call_id, False, sip("INVITE sip:200@sw SIP/2.0", call_id), CALLER, at)
    ladder = store.open(no, f"uuid-{no}", call_id, {"id": no, "answer_at": None},
                        {"role": "customer", "name": "trunk", "address": str(CALLER)})
    assert ladder is not None
    return ladder


def end(store: LadderStore, ladder: Ladder, at: float, answered: bool = False) -> None:
    store.close(ladder, answered, lambda: (
        {"end_at": at, "answer_at": at if answered else None},
        {"attempt-1": {"outcome": "failed", "final_code": 486}}), at)


def leg(seq: int, name: str = "vendor") -> dict[str, Any]:
    return {"id": f"attempt-{seq}", "attempt": seq, "role": "vendor", "name": name}


def test_both_legs_and_every_vendor_land_in_one_ladder_in_order() -> None:
    store = LadderStore(local="203.0.113.1:5060")
    ladder = start(store, 1, at=100.0)
    store.capture("a-1", True, sip("SIP/2.0 100 Trying", "a-1"), CALLER, 100.001)
    store.watch(ladder, "b-1", leg(1, "first"))
    store.capture("b-1", True, sip("INVITE sip:200@v1 SIP/2.0", "b-1"), VENDOR, 100.002)
    store.capture("b-1", False, sip("SIP/2.0 503 Service Unavailable", "b-1"), VENDOR, 100.1)
    store.capture(None, True, sip("ACK sip:200@v1 SIP/2.0", "b-1"), VENDOR, 100.101)  # read
    store.watch(ladder, "b-2", leg(2, "second"))
    store.capture("b-2", True, sip("INVITE sip:200@v2 SIP/2.0", "b-2"), VENDOR2, 100.2)
    store.capture("b-2", False, sip("SIP/2.0 486 Busy Here", "b-2"), VENDOR2, 100.3)
    store.capture("a-1", True, sip("SIP/2.0 486 Busy Here", "a-1"), CALLER, 100.301)
    store.capture("x-9", False, sip("OPTIONS sip:sw SIP/2.0", "x-9"), CALLER, 100.35)  # not ours
    end(store, ladder, 100.4)
    store.capture("a-1", False, sip("ACK sip:200@sw SIP/2.0", "a-1"), CALLER, 100.5)  # late

    found = store.find(101.0, uuid="uuid-1")
    assert found is ladder and store.find(101.0, no=1) is ladder
    view = store.render(ladder)
    assert [p["id"] for p in view["participants"]] == [
        "caller", "softswitch", "attempt-1", "attempt-2"]
    assert view["participants"][1] == {"id": "softswitch", "role": "softswitch",
                                       "name": "softswitch", "address": "203.0.113.1:5060"}
    assert view["participants"][2]["outcome"] == "failed"  # from close()
    lines = [(m["leg"], m["direction"], m["first_line"]) for m in view["messages"]]
    assert lines == [
        ("caller", "in", "INVITE sip:200@sw SIP/2.0"),
        ("caller", "out", "SIP/2.0 100 Trying"),
        ("attempt-1", "out", "INVITE sip:200@v1 SIP/2.0"),
        ("attempt-1", "in", "SIP/2.0 503 Service Unavailable"),
        ("attempt-1", "out", "ACK sip:200@v1 SIP/2.0"),
        ("attempt-2", "out", "INVITE sip:200@v2 SIP/2.0"),
        ("attempt-2", "in", "SIP/2.0 486 Busy Here"),
        ("caller", "out", "SIP/2.0 486 Busy Here"),
        ("caller", "in", "ACK sip:200@sw SIP/2.0"),
    ]
    first, busy = view["messages"][0], view["messages"][6]
    assert (first["from"], first["to"], first["remote"], first["local"]) == (
        "caller", "softswitch", "192.0.2.10:5060", "203.0.113.1:5060")
    assert (busy["from"], busy["to"], busy["remote"], busy["transport"]) == (
        "attempt-2", "softswitch", "[2001:db8::7]:5080", "tcp")
    assert first["text"].startswith("INVITE") and first["at"] == 100.0
    assert view["call"]["state"] == "ended" and view["call"]["end_at"] == 100.4
    assert view["omitted"] == 0
    assert store.snapshot()["kept"] == 1 and store.snapshot()["stored"] == 1


def test_a_live_call_renders_as_up_with_its_current_state() -> None:
    store = LadderStore()
    ladder = start(store, 7)
    view = store.render(ladder, {"answer_at": 123.0})
    assert view["call"]["state"] == "up" and view["call"]["answer_at"] == 123.0
    assert store.snapshot()["live"] == 1


def test_failed_keeps_only_unanswered_calls_and_says_why() -> None:
    store = LadderStore(policy=FAILED)
    answered, failed = start(store, 1), start(store, 2)
    end(store, answered, 110.0, answered=True)
    end(store, failed, 110.0)
    assert store.find(111.0, no=1) == "answered"
    assert store.find(111.0, uuid="uuid-1") == "answered"
    assert isinstance(store.find(111.0, no=2), Ladder)
    assert store.find(111.0, no=3) == "unknown"
    stats = store.snapshot()
    assert (stats["kept"], stats["not_kept"]) == (1, 1)
    # Only the kept ladder's bytes remain.
    assert store.bytes == failed.size > 0


def test_all_keeps_answered_calls_and_off_captures_nothing() -> None:
    store = LadderStore(policy=ALL)
    ladder = start(store, 1)
    end(store, ladder, 110.0, answered=True)
    assert store.find(111.0, no=1) is ladder
    store.configure(OFF, store.max_bytes, store.max_age, 111.0)
    assert store.open(2, "uuid-2", "a-2", {}, {}) is None
    live = start_unchecked(store)
    assert live is None
    # A call up when the policy turned Off is not kept at its end.
    store.configure(ALL, store.max_bytes, store.max_age, 112.0)
    up = start(store, 3)
    store.configure(OFF, store.max_bytes, store.max_age, 113.0)
    end(store, up, 114.0)
    assert store.find(115.0, no=3) == "off"


def start_unchecked(store: LadderStore) -> Ladder | None:
    return store.open(9, "uuid-9", "a-9", {}, {})


def test_a_call_keeps_its_first_and_last_messages() -> None:
    store = LadderStore()
    ladder = start(store, 1)
    for n in range(300):
        store.capture("a-1", True, sip(f"INFO sip:{n} SIP/2.0", "a-1"), CALLER, 100.0 + n)
    view = store.render(ladder)
    assert len(view["messages"]) == HEAD + TAIL
    assert view["messages"][0]["first_line"].startswith("INVITE")
    assert view["messages"][HEAD - 1]["first_line"] == f"INFO sip:{HEAD - 2} SIP/2.0"
    assert view["messages"][-1]["first_line"] == "INFO sip:299 SIP/2.0"
    assert view["omitted"] == 301 - HEAD - TAIL == store.stats.messages_omitted
    # The bytes counted are those of the messages kept.
    assert store.bytes == ladder.size == sum(
        m["size"] + OVERHEAD for m in view["messages"])


def test_the_size_limit_evicts_the_oldest_kept_ladder_first() -> None:
    one_call = 3 * (len(sip("INVITE sip:200@sw SIP/2.0", "a-1", 1000)) + OVERHEAD)
    store = LadderStore(max_bytes=2 * one_call + 10)
    for no in (1, 2, 3):
        ladder = start(store, no, at=100.0 + no)
        for _ in range(2):
            trying = sip("SIP/2.0 100 Trying", f"a-{no}", 1000)
            store.capture(f"a-{no}", True, trying, CALLER, 101.0)
        end(store, ladder, 100.5 + no)
    assert store.find(110.0, no=1) == "evicted"
    assert isinstance(store.find(110.0, no=2), Ladder)
    assert isinstance(store.find(110.0, no=3), Ladder)
    assert store.stats.evicted_size == 1 and store.bytes <= store.max_bytes
    # A smaller limit set live evicts at once.
    store.configure(FAILED, one_call, 3600, 111.0)
    assert store.find(111.0, no=2) == "evicted" and store.stats.evicted_size == 2
    assert store.bytes <= one_call


def test_live_calls_are_never_evicted_a_flood_drops_new_messages() -> None:
    store = LadderStore(max_bytes=20_000)
    ladders = [start(store, no) for no in range(1, 200)]
    assert store.bytes <= store.max_bytes
    assert store.stats.messages_dropped > 0
    assert sum(ladder.omitted for ladder in ladders) == store.stats.messages_dropped
    assert all(store.find(100.0, no=ladder.no) is ladder for ladder in ladders)


def test_kept_ladders_expire_after_their_age() -> None:
    store = LadderStore(max_age=600)
    early, late = start(store, 1), start(store, 2)
    end(store, early, 100.0)
    end(store, late, 400.0)
    assert isinstance(store.find(699.0, no=1), Ladder)
    assert store.find(700.0, no=1) == "expired"
    assert store.find(700.0, uuid="uuid-1") == "expired"
    assert isinstance(store.find(700.0, no=2), Ladder)
    assert store.stats.evicted_age == 1
    assert store.bytes == late.size


def test_late_messages_join_a_kept_ladder_only_for_a_while() -> None:
    store = LadderStore()
    ladder = start(store, 1)
    store.watch(ladder, "b-1", leg(1))
    end(store, ladder, 100.0)
    store.capture("b-1", False, sip("SIP/2.0 200 OK", "b-1"), VENDOR, 100.0 + LINGER / 2)
    store.sweep(100.0 + LINGER)
    store.capture("b-1", False, sip("SIP/2.0 200 OK", "b-1"), VENDOR, 100.0 + LINGER + 1)
    assert [m["first_line"] for m in store.render(ladder)["messages"]] == [
        "INVITE sip:200@sw SIP/2.0", "SIP/2.0 200 OK"]


def test_an_invite_not_seen_arriving_comes_from_the_call() -> None:
    """Admitted after a wait (a cluster's capacity check), other messages came between
    the INVITE and the call's start: the INVITE is taken from the call."""
    store = LadderStore()
    store.capture("a-1", False, sip("INVITE sip:200@sw SIP/2.0", "a-1"), CALLER, 100.0)
    store.capture("zz", False, sip("OPTIONS sip:sw SIP/2.0", "zz"), CALLER, 100.01)
    invite = sip("INVITE sip:200@sw SIP/2.0", "a-1")
    ladder = store.open(1, "uuid-1", "a-1", {}, {}, lambda: (invite, CALLER, 100.0))
    assert ladder is not None
    assert [m["first_line"] for m in store.render(ladder)["messages"]] == [
        "INVITE sip:200@sw SIP/2.0"]


def test_a_huge_message_is_kept_cut_to_the_sip_size_limit() -> None:
    store = LadderStore()
    ladder = start(store, 1)
    store.capture("a-1", True, sip("MESSAGE sip:x SIP/2.0", "a-1", 100_000), CALLER, 101.0)
    assert store.render(ladder)["messages"][-1]["size"] == MAX_MESSAGE


def test_messages_without_a_known_call_cost_no_parse() -> None:
    store = LadderStore()
    store.capture(None, True, b"garbage", CALLER, 100.0)  # nothing watched: not even read
    ladder = start(store, 1)
    store.capture(None, True, b"no call id here\r\n\r\n", CALLER, 100.0)
    store.capture(None, True, sip("ACK sip:x SIP/2.0", "other"), CALLER, 100.0)
    assert len(store.render(ladder)["messages"]) == 1


def test_why_a_ladder_went_is_remembered_for_a_bounded_number_of_calls() -> None:
    from b2bua import ladders

    store = LadderStore(policy=FAILED)
    calls = 2 * ladders.GONE + 10
    for no in range(1, calls + 1):
        end(store, start(store, no), 100.0, answered=True)
    assert store.find(200.0, no=1) == "unknown"
    assert store.find(200.0, uuid="uuid-1") == "unknown"
    assert all(store.find(200.0, no=no) == "answered"
               for no in range(calls - ladders.GONE + 1, calls + 1))
    assert len(store._gone) <= 4 * ladders.GONE


@pytest.mark.parametrize(("data", "call_id"), [
    (b"INVITE x SIP/2.0\r\nCall-ID: abc@h\r\n\r\n", "abc@h"),
    (b"INVITE x SIP/2.0\r\ni:  short \r\n\r\nCall-ID: body", "short"),
    (b"SIP/2.0 200 OK\r\ncall-id:lower\r\n\r\n", "lower"),
    (b"SIP/2.0 200 OK\r\nTo: x\r\n\r\nCall-ID: in-body\r\n", None),
])
def test_the_call_id_is_read_from_the_header_part_only(data: bytes, call_id: str | None
                                                        ) -> None:
    assert call_id_of(data) == call_id


def test_first_line_is_bounded() -> None:
    assert first_line(b"SIP/2.0 180 Ringing\r\nX: y") == "SIP/2.0 180 Ringing"
    assert len(first_line(b"A" * 1000)) == 300


def test_an_answer_stays_within_the_control_sockets_reply() -> None:
    """A ladder of binary junk (each byte a 3-byte replacement character): past the
    text budget, a message's text is its first line only."""
    from b2bua import ladders

    store = LadderStore(max_bytes=1 << 30)
    ladder = start(store, 1)
    junk = b"MESSAGE sip:x SIP/2.0\r\n" + bytes(range(128, 256)) * 500
    for _ in range(199):
        store.capture("a-1", True, junk, CALLER, 101.0)
    messages = store.render(ladder)["messages"]
    text = sum(len(m["text"].encode()) for m in messages)
    assert text < 3 * (ladders.RENDER_TEXT + MAX_MESSAGE) + 200 * 300 < 14 << 20
    assert messages[-1]["text"] == "MESSAGE sip:x SIP/2.0"
    assert messages[-1]["size"] == len(junk)
    assert len(messages[1]["text"]) > 60000
