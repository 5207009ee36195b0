"""Call ladders through the real stack and switchboard (the harness of
``test_switchboard.py``): every message of both legs lands under the call, each vendor
tried is a participant, and what is kept after the end follows SS_SIP_LADDERS."""

from __future__ import annotations

from typing import Any

from test_switchboard import (
    ANSWER,
    CUSTOMER,
    V1,
    V1_PEER,
    V2,
    V2_PEER,
    Switch,
    reply,
    start_call,
    vendor_reply,
)

from api.routes.ladders import SipLadderSchema
from b2bua.ladders import Ladder, LadderStore


def with_ladders(policy: str = "Failed") -> tuple[Switch, LadderStore]:
    switch = Switch()
    store = LadderStore(local="127.0.0.1:5060", policy=policy)
    switch.stack.ladders = store
    switch.board.ladders = store
    return switch, store


def lines(view: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(m["leg"], m["direction"], m["first_line"].split(" sip:")[0])
            for m in view["messages"]]


def test_a_failed_call_keeps_both_legs_and_every_vendor_tried() -> None:
    switch, store = with_ladders()
    caller, first = start_call(switch)
    second = next(s.request for s in switch.feed(
        vendor_reply(first, 503, "Service Unavailable"), V1_PEER)
        if s.addr == V2 and s.message.start_line().startswith("INVITE"))
    final = next(s.response for s in switch.feed(vendor_reply(second, 486, "Busy Here"),
                                                 V2_PEER) if s.addr != V2)
    switch.feed(caller.ack(final.to.tag, branch=caller.branch), CUSTOMER)
    call_no = next(iter(store._kept))

    found = store.find(switch.clock.now, no=call_no)
    assert isinstance(found, Ladder)
    view = store.render(found)
    assert [(p["id"], p["role"], p.get("name")) for p in view["participants"]] == [
        ("caller", "customer", "customer"), ("softswitch", "softswitch", "softswitch"),
        ("attempt-1", "vendor", "vendor1"), ("attempt-2", "vendor", "vendor2")]
    assert [(p.get("outcome"), p.get("final_code")) for p in view["participants"][2:]] == [
        ("failed", 503), ("failed", 486)]
    assert view["participants"][2]["target"] == "127.0.0.20:5060"
    assert lines(view) == [
        ("caller", "in", "INVITE"),
        ("caller", "out", "SIP/2.0 100 Trying"),
        ("attempt-1", "out", "INVITE"),
        ("attempt-1", "in", "SIP/2.0 503 Service Unavailable"),
        ("attempt-1", "out", "ACK"),
        ("attempt-2", "out", "INVITE"),
        ("attempt-2", "in", "SIP/2.0 486 Busy Here"),
        ("attempt-2", "out", "ACK"),
        ("caller", "out", "SIP/2.0 486 Busy Here"),
        ("caller", "in", "ACK"),  # after the call's end: still its ladder's
    ]
    call = view["call"]
    assert call["call_id_in"] == caller.call_id and call["final_code"] == 486
    assert call["cdr_uuid"] == switch.writer.cdr()["cdr_uuid"]
    assert store.find(switch.clock.now, uuid=call["cdr_uuid"]) is found
    assert view["messages"][2]["remote"] == "127.0.0.20:5060"
    assert view["messages"][0]["remote"] == f"{CUSTOMER.host}:{CUSTOMER.port}"
    assert SipLadderSchema().validate(view) == {}  # as the API documents it


def answered_and_hung_up(switch: Switch) -> str:
    caller, invite = start_call(switch)
    sent = switch.feed(vendor_reply(invite, 200, "OK", ANSWER), V1_PEER)
    caller.to_tag = next(s.response for s in sent if s.addr != V1).to.tag
    switch.feed(caller.ack(), CUSTOMER)
    sent = switch.feed(caller.request("BYE"), CUSTOMER)
    bye = next(s.request for s in sent if s.addr == V1)
    switch.feed(reply(bye, 200, "OK"), V1_PEER)  # after the call's end
    return str(switch.writer.cdr()["cdr_uuid"])


def test_an_answered_call_is_kept_only_when_all_are() -> None:
    switch, store = with_ladders("Failed")
    uuid = answered_and_hung_up(switch)
    assert store.find(switch.clock.now, uuid=uuid) == "answered"
    assert store.bytes == 0 and store.snapshot()["not_kept"] == 1

    switch, store = with_ladders("All")
    uuid = answered_and_hung_up(switch)
    found = store.find(switch.clock.now, uuid=uuid)
    assert isinstance(found, Ladder)
    assert lines(store.render(found))[-4:] == [
        ("caller", "in", "BYE"), ("caller", "out", "SIP/2.0 200 OK"),
        ("attempt-1", "out", "BYE"), ("attempt-1", "in", "SIP/2.0 200 OK")]
    assert store.render(found)["call"]["answer_at"] is not None
    assert SipLadderSchema().validate(store.render(found, {"answer_at": 1.0})) == {}
