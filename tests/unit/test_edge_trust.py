"""A proxy in front (b2bua/sip/edge.py, docs/cluster.md): the switchboard judges a
request from a trusted edge on the customer's address the edge vouches for, answers a
silent drop to the edge with X-Softswitch-Drop, answers the edge's own probe, and sends
calls to vendors through SS_OUTBOUND_PROXY; a header from anyone else is ignored."""

from __future__ import annotations

import pytest
from test_switchboard import (
    CALLEE,
    CUSTOMER,
    PHONE,
    PHONE_SRC,
    STRANGER,
    V1,
    Caller,
    Switch,
    _register,
    only_request,
    only_response,
    phone_authorization,
    statuses,
    vendor_reply,
)

from b2bua.sip.edge import parse_addresses, parse_proxy, parse_source
from b2bua.sip.peer import Peer

EDGE = Peer("udp", "127.0.0.50", 5060)
EDGE_ADDR = (EDGE.host, EDGE.port)


def edge_switch(**values: str) -> Switch:
    return Switch(values={"SS_EDGE_ADDRESSES": EDGE.host, **values})


def through_edge(caller: Caller, customer: Peer, extra: str = "") -> str:
    """The caller's INVITE as the edge relays it: its Via and Record-Route on top, the
    customer's address in X-Softswitch-Source."""
    text = caller.invite(extra=f"Record-Route: <sip:{EDGE.host};lr>\r\n"
                               f"X-Softswitch-Source: {customer}\r\n{extra}")
    first, rest = text.split("\r\n", 1)
    return (f"{first}\r\nVia: SIP/2.0/UDP {EDGE.host}:{EDGE.port};branch=z9hG4bK-e"
            f"{caller.branch}\r\n{rest}")


def test_the_customers_address_from_the_edge_decides_and_is_in_the_cdr() -> None:
    switch = edge_switch()
    caller = Caller(source=EDGE)
    sent = switch.feed(through_edge(caller, CUSTOMER), EDGE)
    assert statuses(sent, EDGE_ADDR) == [100]  # answered to the edge
    invite = only_request(sent, V1, "INVITE")
    sent = switch.feed(vendor_reply(invite, 486, "Busy Here"), Peer("udp", *V1))
    assert statuses(sent, EDGE_ADDR) == [486]
    assert switch.writer.cdr()["source"] == f"{CUSTOMER.host}:{CUSTOMER.port}"


def test_an_unknown_customer_behind_the_edge_is_silence_the_edge_swallows() -> None:
    switch = edge_switch(SS_REPLY_UNAUTHORIZED="Off")
    sent = switch.feed(through_edge(Caller(source=EDGE), STRANGER), EDGE)
    assert [s.response.status for s in sent] == [403]
    assert sent[0].addr == EDGE_ADDR
    assert sent[0].response.get("X-Softswitch-Drop") == "silent"
    assert switch.board.stats.dropped_unknown == 1
    assert not switch.active


def test_with_replies_on_the_unknown_customer_is_challenged_through_the_edge() -> None:
    switch = edge_switch(SS_REPLY_UNAUTHORIZED="On")
    sent = switch.feed(through_edge(Caller(source=EDGE), STRANGER), EDGE)
    assert statuses(sent, EDGE_ADDR) == [401]
    assert sent[0].response.get("X-Softswitch-Drop") is None


def test_the_header_from_an_untrusted_source_is_ignored() -> None:
    """A stranger naming the customer's address is still a stranger: dropped, and in
    silence (no edge to tell)."""
    switch = Switch(values={"SS_REPLY_UNAUTHORIZED": "Off"})  # no edge configured
    caller = Caller(source=STRANGER)
    sent = switch.feed(caller.invite(extra=f"X-Softswitch-Source: {CUSTOMER}\r\n"), STRANGER)
    assert sent == []
    switch = edge_switch(SS_REPLY_UNAUTHORIZED="Off")  # an edge, but not this source
    assert switch.feed(Caller(source=STRANGER).invite(
        extra=f"X-Softswitch-Source: {CUSTOMER}\r\n"), STRANGER) == []


def test_the_customers_own_address_without_the_edge_still_works() -> None:
    switch = edge_switch()
    caller = Caller()
    sent = switch.feed(caller.invite(), CUSTOMER)
    assert statuses(sent) == [100]


def test_a_bad_header_from_the_edge_is_counted_and_judged_as_the_edge() -> None:
    switch = edge_switch(SS_REPLY_UNAUTHORIZED="Off")
    text = through_edge(Caller(source=EDGE), CUSTOMER).replace(
        f"X-Softswitch-Source: {CUSTOMER}", "X-Softswitch-Source: udp:not-an-ip:5060")
    assert switch.feed(text, EDGE) == []  # the edge's address is no customer
    assert switch.board.edge.bad_headers == 1


def test_the_edges_probe_is_answered_200() -> None:
    switch = edge_switch(SS_REPLY_UNAUTHORIZED="Off")
    probe = (f"OPTIONS sip:{EDGE.host} SIP/2.0\r\n"
             f"Via: SIP/2.0/UDP {EDGE.host}:{EDGE.port};branch=z9hG4bK-probe1\r\n"
             f"Max-Forwards: 70\r\nFrom: <sip:dispatcher@{EDGE.host}>;tag=p1\r\n"
             f"To: <sip:{EDGE.host}>\r\nCall-ID: probe-1\r\nCSeq: 1 OPTIONS\r\n"
             "Content-Length: 0\r\n\r\n")
    assert statuses(switch.feed(probe, EDGE), EDGE_ADDR) == [200]
    assert switch.board.stats.edge_probes == 1
    # The same probe from elsewhere is an unknown source's OPTIONS: silence.
    again = probe.replace("probe-1", "probe-2").replace("probe1", "probe2")
    assert switch.feed(again, STRANGER) == []


def test_calls_to_vendors_go_through_the_outbound_proxy() -> None:
    proxy = ("127.0.0.50", 5070)
    switch = Switch(values={"SS_OUTBOUND_PROXY": f"{proxy[0]}:{proxy[1]}"})
    sent = switch.feed(Caller().invite(), CUSTOMER)
    invite = only_request(sent, proxy, "INVITE")
    assert invite.ruri.host == V1[0]  # the Request-URI is still the vendor's
    assert invite.get("Route") == f"<sip:{proxy[0]}:{proxy[1]};lr>"
    assert invite.ruri.user == CALLEE
    # The CDR attempt names the vendor, not the proxy.
    switch.feed(vendor_reply(invite, 486, "Busy Here"), Peer("udp", *proxy))
    assert switch.writer.attempts[0]["target"] == f"{V1[0]}:{V1[1]}"


def relayed(text: str, customer: Peer) -> str:
    """Any request as the edge relays it: its Via on top, a Path on a REGISTER, the
    customer's address vouched for."""
    first, rest = text.split("\r\n", 1)
    path = f"Path: <sip:{EDGE.host}:{EDGE.port};lr>\r\n" if first.startswith("REGISTER") \
        else ""
    return (f"{first}\r\nVia: SIP/2.0/UDP {EDGE.host}:{EDGE.port};branch=z9hG4bK-e"
            f"{abs(hash(text))}\r\n{path}X-Softswitch-Source: {customer}\r\n{rest}")


def test_a_phone_registered_through_the_edge_is_known_by_its_own_address() -> None:
    """With SS_REPLY_UNAUTHORIZED Off an INVITE from an unknown address is silence; from
    the address a phone registered from (the edge vouching for both) it is the phone's
    call, as without an edge, while its calls still go through the edge (its Path)."""
    switch = edge_switch(SS_REPLY_UNAUTHORIZED="Off")
    challenge = only_response(switch.feed(relayed(_register(), PHONE_SRC), EDGE), 401,
                              EDGE_ADDR)
    auth = phone_authorization(challenge)
    only_response(switch.feed(relayed(_register(auth, 2), PHONE_SRC), EDGE), 200, EDGE_ADDR)
    (binding,) = switch.bindings.all()
    assert binding.customer == PHONE_SRC and binding.source == EDGE
    assert binding.snapshot()["customer"] == str(PHONE_SRC)

    caller = Caller(source=EDGE)
    call = caller.invite().replace("<sip:1001@", f"<sip:{PHONE.username}@")
    sent = switch.feed(relayed(call, PHONE_SRC), EDGE)
    assert statuses(sent, EDGE_ADDR) == [100]  # the phone's call, no challenge
    # The same INVITE vouched for another address: silence, answered to the edge.
    other = Caller(source=EDGE).invite().replace("<sip:1001@", f"<sip:{PHONE.username}@")
    sent = switch.feed(relayed(other, STRANGER), EDGE)
    assert [s.response.get("X-Softswitch-Drop") for s in sent] == ["silent"]
    # A call to the phone goes to the edge, its Path as the Route.
    sent = switch.feed(Caller(callee=PHONE.username).invite(), CUSTOMER)
    invite = only_request(sent, EDGE_ADDR, "INVITE")
    assert invite.get("Route") == f"<sip:{EDGE.host}:{EDGE.port};lr>"


def test_parsing() -> None:
    assert parse_source("udp:198.18.0.7:5062") == Peer("udp", "198.18.0.7", 5062)
    assert parse_source("TCP:2001:db8::1:5060") == Peer("tcp", "2001:db8::1", 5060)
    assert parse_source("tls:[2001:db8::1]:5061") == Peer("tcp", "2001:db8::1", 5061)
    for bad in ("", "udp:1.2.3.4", "sctp:1.2.3.4:5060", "udp:1.2.3.4:0", "udp:host:5060",
                "udp:1.2.3.4:99999"):
        assert parse_source(bad) is None, bad
    assert parse_addresses(" 198.18.0.1, ::1 ,") == {"198.18.0.1", "::1"}
    with pytest.raises(ValueError, match="'edge'"):
        parse_addresses("198.18.0.1,edge")
    assert parse_proxy("") is None
    assert parse_proxy("198.18.0.1") == Peer("udp", "198.18.0.1", 5060)
    assert parse_proxy("198.18.0.1:5080") == Peer("udp", "198.18.0.1", 5080)
    assert parse_proxy("[::1]:5080") == Peer("udp", "::1", 5080)
    for bad in ("edge.example:5060", "198.18.0.1:0", "[::1]x", "198.18.0.1:port"):
        with pytest.raises(ValueError):
            parse_proxy(bad)
