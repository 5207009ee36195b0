"""The switchboard (``b2bua/calls/switchboard.py``) with its call adapters
(``b2bua/aio/call_adapter.py``), driven in process through a real ``SipStack``: SIP text
goes in through ``stack.on_bytes``, a fake datagram transport records every datagram
sent, a fake clock holds every timer (transactions' and calls') until a test advances it.

The switch as wired here: the customer trunk (mapping gateway, ``ip`` mode) at
127.0.0.10, two vendors (routing gateways) at 127.0.0.20 (priority 0) and 127.0.0.21
(priority 1), anything else an unknown source. Expectations come from docs/calls.md,
docs/failover.md and RFC 3261.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fakerelay import FakePlane, counters, leg_counters

from b2bua.calls import cdr
from b2bua.calls.anchor import MediaAnchor, stream_count
from b2bua.calls.cdr import CdrWriter
from b2bua.calls.switchboard import Switchboard
from b2bua.config.live import Params
from b2bua.numbers.rules import NumberTables
from b2bua.policy import Account, Policy, Registered
from b2bua.registrar.bindings import BindingStore
from b2bua.registrar.phones import PhoneAccount, PhoneDirectory
from b2bua.registrar.registrar import Registrar
from b2bua.routing.dns import Plan, Target
from b2bua.routing.gateways import GatewayDirectory, MappingGateway, RoutingGateway
from b2bua.security.digest import response_digest
from b2bua.sip.headers import parse_auth_params
from b2bua.sip.message import Request, Response
from b2bua.sip.parser import parse_message
from b2bua.sip.peer import Peer
from b2bua.sip.stack import SipStack
from b2bua.storage import cdrs
from b2bua.storage.registrations import RegistrationLog

HOST = "127.0.0.1"  # the softswitch: 127.0.0.1:5060
CUSTOMER = Peer("udp", "127.0.0.10", 5060)
STRANGER = Peer("udp", "127.0.0.99", 5060)
PHONE_SRC = Peer("udp", "127.0.0.30", 5062)
V1 = ("127.0.0.20", 5060)
V2 = ("127.0.0.21", 5060)
CUSTOMER_ADDR = (CUSTOMER.host, CUSTOMER.port)
V1_PEER = Peer("udp", *V1)
V2_PEER = Peer("udp", *V2)
CALLEE = "4420001"

OFFER = ("v=0\r\no=- 1 1 IN IP4 127.0.0.10\r\ns=-\r\nc=IN IP4 127.0.0.10\r\n"
         "t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
ANSWER = ("v=0\r\no=- 2 2 IN IP4 127.0.0.20\r\ns=-\r\nc=IN IP4 127.0.0.20\r\n"
          "t=0 0\r\nm=audio 5000 RTP/AVP 0\r\n")

_ids = itertools.count(1)


# -- the fakes ------------------------------------------------------------------------------


@dataclass(order=True)
class _Timer:
    due: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


EPOCH = 1_760_000_000.0  # the fake wall clock's start


class FakeClock:
    """``Timers`` (``call_later``) over a heap that only moves when a test advances it, and
    the switch's ``Clock`` (wall and monotonic time) that moves with it."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[_Timer] = []
        self._seq = itertools.count()

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(self.now + delay, next(self._seq), callback)
        heapq.heappush(self._heap, timer)
        return timer

    def time(self) -> float:
        return EPOCH + self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        until = self.now + seconds
        while self._heap and self._heap[0].due <= until:
            timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self.now = timer.due
            timer.callback()
        self.now = until

    @property
    def pending(self) -> int:
        return sum(1 for t in self._heap if not t.cancelled)


class FakeDatagrams:
    """What ``UdpTransport.send`` writes to: records each datagram and where it went."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class FakeWriter:
    """The database writer as CdrWriter, active-call notes and RegistrationLog use it."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    def submit(self, sql: str, params: tuple[Any, ...]) -> None:
        self.statements.append((sql, params))

    def of(self, prefix: str) -> list[tuple[Any, ...]]:
        return [p for s, p in self.statements if s.startswith(prefix)]

    @property
    def cdrs(self) -> list[tuple[Any, ...]]:
        return [p for s, p in self.statements if s == cdr.INSERT]

    def cdr(self, index: int = -1) -> dict[str, Any]:
        """One CDR row as a dict of its columns."""
        return dict(zip(cdr.CdrRecord.__dataclass_fields__, self.cdrs[index], strict=True))

    @property
    def attempts(self) -> list[dict[str, Any]]:
        """The CDR attempts' rows, each as a dict of its columns."""
        return [dict(zip(("cdr_uuid", *cdr.ATTEMPT_COLUMNS), p, strict=True))
                for s, p in self.statements if s == cdrs.INSERT_ATTEMPT]

    def codes(self) -> list[tuple[int | None, str]]:
        """Each attempt's final code and outcome."""
        return [(a["final_code"], a["outcome"]) for a in self.attempts]


@dataclass
class Sent:
    message: Request | Response
    addr: tuple[str, int]

    @property
    def request(self) -> Request:
        assert isinstance(self.message, Request), self.message
        return self.message

    @property
    def response(self) -> Response:
        assert isinstance(self.message, Response), self.message
        return self.message


# -- the switch -----------------------------------------------------------------------------


def mapping_gateway(capacity: int | None = None, **fields: Any) -> MappingGateway:
    return MappingGateway(id=1, name="customer", auth_mode="ip",
                          ips=frozenset({CUSTOMER.host}), port=None, username=None,
                          password=None, capacity=capacity, enabled=True, **fields)


def routing_gateway(gw_id: int, host: str, priority: int, **fields: Any) -> RoutingGateway:
    return RoutingGateway(id=gw_id, name=f"vendor{gw_id}", host=host, port=5060,
                          transport="udp", prefixes=fields.pop("prefixes", ("44",)),
                          priority=priority, prefix_mode="terminate",
                          capacity=fields.pop("capacity", None), enabled=True, **fields)


PHONE = PhoneAccount(7, "3001", "phone-secret", None, None, True)


class Switch:
    """One switchboard on a stack at 127.0.0.1:5060, its fakes, and what it sent."""

    def __init__(self, *, capacity: int | None = None,
                 vendors: Iterable[RoutingGateway] | None = None,
                 values: dict[str, Any] | None = None,
                 gateways: GatewayDirectory | None = None,
                 phones: Iterable[PhoneAccount] = (PHONE,),
                 wire: FakeDatagrams | None = None, writer: FakeWriter | None = None
                 ) -> None:
        """The customer trunk and two vendors above, or ``gateways`` as given; ``wire``
        and ``writer`` may be sinks that keep less (the policy fuzzer's)."""
        self.clock = FakeClock()
        self.wire = wire or FakeDatagrams()
        self.writer = writer or FakeWriter()
        self.params = Params()
        self.params.values.update(values or {})
        if gateways is None:
            gateways = GatewayDirectory()
            gateways.set_mapping([mapping_gateway(capacity)])
            gateways.set_routing(list(vendors) if vendors is not None else [
                routing_gateway(1, V1[0], 0), routing_gateway(2, V2[0], 1)])
        self.gateways = gateways
        self.stack = SipStack(HOST, 5060, HOST)
        self.phones = PhoneDirectory()
        self.phones.set(list(phones))
        self.bindings = BindingStore(RegistrationLog(self.writer))  # type: ignore[arg-type]
        self.registrar = Registrar(self.params, self.bindings)
        self.policy = Policy(self.params, self.gateways, HOST,
                             phone_accounts=self._phone_account,
                             registered_user=self._registered_user,
                             any_phone=lambda: self.phones.any_enabled)
        self.board = Switchboard(
            self.stack, self.params, self.gateways,
            CdrWriter(self.writer),  # type: ignore[arg-type]
            self.clock, self.policy, self.phones, self.bindings, self.registrar,
            NumberTables(), clock=self.clock)
        self.stack.attach(self.board, self.clock)
        self.stack.udp.connection_made(self.wire)  # type: ignore[arg-type]
        self._seen = 0

    # The engine's lookups (b2bua/engine.py), over this switch's directories.
    def _phone_account(self, username: str) -> Account | None:
        phone = self.phones.get(username)
        return Account(phone.username, phone.password, "phone") if phone else None

    def _registered_user(self, source: Peer, now: float) -> Registered | None:
        binding = self.bindings.find_by_source(source, now)
        return Registered(binding.username, binding.mapping_gateway_id) if binding else None

    # -- driving it ------------------------------------------------------------------------

    def _new(self) -> list[Sent]:
        out = [Sent(parse_message(data), addr) for data, addr in self.wire.sent[self._seen:]]
        self._seen = len(self.wire.sent)
        return out

    def feed(self, text: str | bytes, source: Peer) -> list[Sent]:
        """Bytes in from ``source``; what went out meanwhile."""
        self._new()
        data = text if isinstance(text, bytes) else text.encode()
        self.stack.on_bytes(data, source)
        assert self.stack.stats.handler_errors == 0, "the switchboard raised"
        return self._new()

    def advance(self, seconds: float) -> list[Sent]:
        self._new()
        self.clock.advance(seconds)
        return self._new()

    def drain(self) -> list[Sent]:
        """What went out since the last look (after the event loop ran a call's task)."""
        return self._new()

    @property
    def active(self) -> bool:
        return bool(self.board.calls or self.board.legs)

    def count(self, kind: str, ident: int) -> int:
        return self.board.counts[(kind, ident)]


# -- SIP text -------------------------------------------------------------------------------


def _content(body: str, content_type: str = "application/sdp") -> str:
    head = f"Content-Type: {content_type}\r\n" if body else ""
    return f"{head}Content-Length: {len(body.encode())}\r\n\r\n{body}"


@dataclass
class Caller:
    """The customer's side of one call: its identifiers, and the INVITE it sends."""

    call_id: str = field(default_factory=lambda: f"cust-{next(_ids)}@127.0.0.10")
    branch: str = field(default_factory=lambda: f"z9hG4bK-c{next(_ids)}")
    tag: str = field(default_factory=lambda: f"ctag{next(_ids)}")
    callee: str = CALLEE
    source: Peer = CUSTOMER
    to_tag: str | None = None  # ours, once a dialog-creating response came
    cseq: int = 1

    @property
    def via(self) -> str:
        return f"SIP/2.0/UDP {self.source.host}:{self.source.port};branch={self.branch};rport"

    def invite(self, max_forwards: int | None = 70, extra: str = "", body: str = OFFER,
               vias: Iterable[str] = ()) -> str:
        more_vias = "".join(f"Via: {v}\r\n" for v in vias)
        forwards = f"Max-Forwards: {max_forwards}\r\n" if max_forwards is not None else ""
        return (f"INVITE sip:{self.callee}@{HOST}:5060 SIP/2.0\r\n"
                f"Via: {self.via}\r\n{more_vias}{forwards}"
                f'From: "Alice" <sip:1001@{self.source.host}>;tag={self.tag}\r\n'
                f"To: <sip:{self.callee}@{HOST}>\r\n"
                f"Call-ID: {self.call_id}\r\n"
                f"CSeq: 1 INVITE\r\n"
                f"Contact: <sip:1001@{self.source.host}:{self.source.port}>\r\n"
                f"{extra}" + _content(body))

    def cancel(self) -> str:
        """The CANCEL of the INVITE: its branch, Request-URI, From, To, Call-ID, CSeq."""
        return (f"CANCEL sip:{self.callee}@{HOST}:5060 SIP/2.0\r\n"
                f"Via: {self.via}\r\nMax-Forwards: 70\r\n"
                f'From: "Alice" <sip:1001@{self.source.host}>;tag={self.tag}\r\n'
                f"To: <sip:{self.callee}@{HOST}>\r\n"
                f"Call-ID: {self.call_id}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n")

    def ack(self, to_tag: str | None = None, branch: str | None = None) -> str:
        """ACK of a final response: of a 2xx in a new transaction (``branch`` None), of a
        non-2xx in the INVITE's (RFC 3261 17.1.1.3)."""
        tag = to_tag or self.to_tag
        via = self.via if branch is None else self.via.replace(self.branch, branch)
        return (f"ACK sip:softswitch@{HOST}:5060 SIP/2.0\r\n"
                f"Via: {via}\r\nMax-Forwards: 70\r\n"
                f'From: "Alice" <sip:1001@{self.source.host}>;tag={self.tag}\r\n'
                f"To: <sip:{self.callee}@{HOST}>;tag={tag}\r\n"
                f"Call-ID: {self.call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")

    def request(self, method: str, extra: str = "", body: str = "",
                content_type: str = "application/sdp") -> str:
        """An in-dialog request from the caller (To carries our tag)."""
        self.cseq += 1
        return (f"{method} sip:softswitch@{HOST}:5060 SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.source.host}:{self.source.port};"
                f"branch=z9hG4bK-r{next(_ids)};rport\r\nMax-Forwards: 70\r\n"
                f'From: "Alice" <sip:1001@{self.source.host}>;tag={self.tag}\r\n'
                f"To: <sip:{self.callee}@{HOST}>;tag={self.to_tag}\r\n"
                f"Call-ID: {self.call_id}\r\nCSeq: {self.cseq} {method}\r\n"
                f"Contact: <sip:1001@{self.source.host}:{self.source.port}>\r\n"
                f"{extra}" + _content(body, content_type))


def reply(request: Request, status: int, reason: str, tag: str | None = None,
          contact: str | None = None, body: str = "", extra: str = "") -> str:
    """A response to ``request`` as its receiver writes it: the request's Vias, From,
    Call-ID and CSeq, its To with ``tag``."""
    vias = "".join(f"Via: {v}\r\n" for v in request.get_all("Via"))
    to = request.get("To") or ""
    if tag is not None and ";tag=" not in to:
        to = f"{to};tag={tag}"
    contact_line = f"Contact: {contact}\r\n" if contact else ""
    return (f"SIP/2.0 {status} {reason}\r\n{vias}"
            f"From: {request.get('From')}\r\nTo: {to}\r\n"
            f"Call-ID: {request.call_id}\r\nCSeq: {request.get('CSeq')}\r\n"
            f"{contact_line}{extra}" + _content(body))


def _vendor_at(invite: Request) -> tuple[str, int]:
    return V2 if invite.ruri.host == V2[0] else V1


def vendor_reply(invite: Request, status: int, reason: str, body: str = "",
                 extra: str = "", tag: str = "vtag") -> str:
    """A vendor's response to our INVITE: a dialog-creating one with its Contact."""
    host, port = _vendor_at(invite)
    contact = f"<sip:{CALLEE}@{host}:{port}>" if 100 < status < 300 else None
    return reply(invite, status, reason, tag if status > 100 else None, contact, body, extra)


def vendor_request(invite: Request, method: str, cseq: int, vendor_tag: str = "vtag",
                   extra: str = "", body: str = "") -> str:
    """An in-dialog request from the vendor on the leg ``invite`` started."""
    host, port = _vendor_at(invite)
    return (f"{method} sip:softswitch@{HOST}:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-v{next(_ids)}\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: {invite.get('To')};tag={vendor_tag}\r\n"
            f"To: {invite.get('From')}\r\n"
            f"Call-ID: {invite.call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:{CALLEE}@{host}:{port}>\r\n{extra}" + _content(body))


# -- what went out --------------------------------------------------------------------------


def to(sent: list[Sent], addr: tuple[str, int]) -> list[Sent]:
    return [s for s in sent if s.addr == addr]


def statuses(sent: list[Sent], addr: tuple[str, int] = CUSTOMER_ADDR) -> list[int]:
    return [s.response.status for s in to(sent, addr) if isinstance(s.message, Response)]


def requests(sent: list[Sent], addr: tuple[str, int], method: str) -> list[Request]:
    return [s.request for s in to(sent, addr)
            if isinstance(s.message, Request) and s.message.method == method]


def only_request(sent: list[Sent], addr: tuple[str, int], method: str) -> Request:
    found = requests(sent, addr, method)
    assert len(found) == 1, f"{len(found)} {method} to {addr}: {sent}"
    return found[0]


def only_response(sent: list[Sent], status: int,
                  addr: tuple[str, int] = CUSTOMER_ADDR) -> Response:
    found = [s.response for s in to(sent, addr)
             if isinstance(s.message, Response) and s.message.status == status]
    assert len(found) == 1, f"{len(found)} x {status} to {addr}: {sent}"
    return found[0]


# -- scenarios shared by the tests ----------------------------------------------------------


def start_call(switch: Switch, caller: Caller | None = None) -> tuple[Caller, Request]:
    """A customer INVITE through to the first vendor; the caller and our INVITE."""
    caller = caller or Caller()
    sent = switch.feed(caller.invite(), caller.source)
    assert statuses(sent, (caller.source.host, caller.source.port)) == [100]
    return caller, only_request(sent, V1, "INVITE")


def answered_call(switch: Switch) -> tuple[Caller, Request]:
    """A call answered by vendor 1 and ACKed by the caller (confirmed)."""
    caller, invite = start_call(switch)
    sent = switch.feed(vendor_reply(invite, 200, "OK", ANSWER), V1_PEER)
    ok = only_response(sent, 200)
    caller.to_tag = ok.to.tag
    assert switch.feed(caller.ack(), CUSTOMER) == []
    return caller, invite


def assert_idle(switch: Switch) -> None:
    """Every call gone: no call, no leg, no call counted against any gateway."""
    assert switch.board.calls == {}
    assert switch.board.legs == {}
    assert switch.count("gateway", 1) == 0
    assert switch.count("routing", 1) == 0
    assert switch.count("routing", 2) == 0


# -- a whole call ---------------------------------------------------------------------------


def test_invite_from_the_customer_goes_to_the_first_vendor() -> None:
    switch = Switch()
    caller = Caller()
    sent = switch.feed(caller.invite(), CUSTOMER)
    trying = only_response(sent, 100)
    assert trying.call_id == caller.call_id and trying.to.tag is None
    invite = only_request(sent, V1, "INVITE")
    assert len(sent) == 2  # nothing to the second vendor, nothing else to the caller
    assert invite.call_id != caller.call_id  # the vendor leg is a dialog of its own
    assert invite.max_forwards == 69
    assert invite.uri == f"sip:{CALLEE}@127.0.0.20:5060"
    assert invite.from_.uri.user == "1001" and invite.from_.uri.host == HOST
    assert invite.from_.display == "Alice" and invite.from_.tag != caller.tag
    assert invite.to.tag is None
    assert invite.top_via.host == HOST and invite.top_via.port == 5060
    assert len(invite.vias) == 1  # a B2BUA: the caller's Via stays on the caller's leg
    assert invite.body == OFFER.encode()  # no relay: the SDP passes unchanged
    assert switch.board.stats.attempts == 1
    assert switch.count("gateway", 1) == 1 and switch.count("routing", 1) == 1
    assert set(switch.board.legs) == {caller.call_id, invite.call_id}


def test_a_whole_call_ringing_answer_ack_and_bye() -> None:
    switch = Switch()
    caller, invite = start_call(switch)

    # The vendor's 100 is hop-by-hop: nothing for the caller.
    assert switch.feed(vendor_reply(invite, 100, "Trying"), V1_PEER) == []

    sent = switch.feed(vendor_reply(invite, 180, "Ringing"), V1_PEER)
    ringing = only_response(sent, 180)
    assert len(sent) == 1
    our_tag = ringing.to.tag
    assert our_tag and our_tag != "vtag"  # our To tag, not the vendor's
    assert ringing.call_id == caller.call_id
    assert ringing.get("Contact") == f"<sip:softswitch@{HOST}:5060>"

    sent = switch.feed(vendor_reply(invite, 200, "OK", ANSWER), V1_PEER)
    ok = only_response(sent, 200)
    assert ok.to.tag == our_tag  # the same dialog as the 180
    assert ok.get("Contact") == f"<sip:softswitch@{HOST}:5060>"
    assert ok.body == ANSWER.encode() and ok.get("Content-Type") == "application/sdp"
    ack = only_request(sent, V1, "ACK")  # the vendor's 200 ACKed at once
    assert ack.call_id == invite.call_id and ack.to.tag == "vtag" and ack.cseq.number == 1
    assert len(sent) == 2

    # Unacknowledged, the 200 is sent again (RFC 3261 13.3.1.4: T1, 2*T1, ...).
    again = switch.advance(0.6)
    assert statuses(again) == [200] and again[0].message.to_bytes() == ok.to_bytes()

    caller.to_tag = our_tag
    assert switch.feed(caller.ack(), CUSTOMER) == []  # an ACK is never answered
    assert switch.advance(20.0) == []  # the ACK stopped the retransmissions

    sent = switch.feed(caller.request("BYE"), CUSTOMER)
    assert statuses(sent) == [200]
    bye = only_request(sent, V1, "BYE")
    assert bye.call_id == invite.call_id
    assert bye.from_.tag == invite.from_.tag and bye.to.tag == "vtag"
    assert bye.cseq.number == 2
    assert len(sent) == 2
    switch.feed(reply(bye, 200, "OK"), V1_PEER)

    assert_idle(switch)
    assert switch.count("routing_total", 1) == 1  # calls ever, not now
    assert switch.board.stats.answered == 1 and switch.board.stats.failed == 0
    assert len(switch.writer.cdrs) == 1
    row = switch.writer.cdr()
    assert row["call_id_in"] == caller.call_id and row["call_id_out"] == invite.call_id
    assert row["final_code"] == 200 and row["hangup_by"] == "caller"
    assert row["termination_reason"] == "caller BYE"
    assert row["routing_gateway_id"] == 1 and row["mapping_gateway_id"] == 1
    assert row["ringing_at"] is not None and row["answer_at"] is not None
    assert len(switch.writer.attempts) == 1
    # The crash-recovery note: written at the start, marked answered, removed at the end.
    assert len(switch.writer.of("INSERT INTO active_calls")) == 1
    assert switch.writer.of("UPDATE active_calls") != []
    assert switch.writer.of("DELETE FROM active_calls") == [(caller.call_id,)]


def test_the_vendor_hangs_up_and_the_caller_gets_the_bye() -> None:
    switch = Switch()
    caller, invite = answered_call(switch)
    sent = switch.feed(vendor_request(invite, "BYE", 2), V1_PEER)
    assert statuses(sent, V1) == [200]
    bye = only_request(sent, CUSTOMER_ADDR, "BYE")  # to the caller's Contact
    assert bye.call_id == caller.call_id
    assert bye.from_.tag == caller.to_tag and bye.to.tag == caller.tag
    assert bye.uri == f"sip:1001@{CUSTOMER.host}:{CUSTOMER.port}"
    assert_idle(switch)
    row = switch.writer.cdr()
    assert row["hangup_by"] == "callee" and row["termination_reason"] == "callee BYE"


def test_a_retransmitted_200_from_the_vendor_is_acked_again() -> None:
    switch = Switch()
    _caller, invite = answered_call(switch)
    first_ack = switch.wire.sent[-2][0]  # the ACK went out just before the caller's 200
    assert first_ack.startswith(b"ACK ")
    sent = switch.feed(vendor_reply(invite, 200, "OK", ANSWER), V1_PEER)
    assert [s.addr for s in sent] == [V1]
    assert sent[0].message.to_bytes() == first_ack  # the same ACK (RFC 3261 13.2.2.4)
    assert switch.stack.stats.stray_responses == 1


def test_no_ack_from_the_caller_hangs_up_both_legs_after_32_s() -> None:
    switch = Switch()
    caller, invite = start_call(switch)
    sent = switch.feed(vendor_reply(invite, 200, "OK", ANSWER), V1_PEER)
    caller.to_tag = only_response(sent, 200).to.tag
    sent = switch.advance(31.0)
    assert set(statuses(sent)) == {200} and len(sent) >= 5  # 0.5, 1.5, 3.5, 7.5, ...
    sent = switch.advance(1.05)  # Timer L: 64*T1 after the 200 (a BYE resends at +0.5)
    assert only_request(sent, V1, "BYE").call_id == invite.call_id
    assert only_request(sent, CUSTOMER_ADDR, "BYE").call_id == caller.call_id
    assert_idle(switch)
    row = switch.writer.cdr()
    assert row["termination_reason"] == "no ACK from caller" and row["hangup_by"] == "system"


def test_a_bye_nobody_answers_is_resent_then_given_up() -> None:
    switch = Switch()
    caller, invite = answered_call(switch)
    switch.board.hang_up_all("shutdown")
    first = switch.drain()
    assert len(first) == 2
    again = switch.advance(31.9)  # Timer E: T1, 2*T1, ... T2, until Timer F (64*T1)
    assert len(requests(again, V1, "BYE")) >= 5
    assert {r.call_id for r in requests(again, V1, "BYE")} == {invite.call_id}
    assert {r.call_id for r in requests(again, CUSTOMER_ADDR, "BYE")} == {caller.call_id}
    assert switch.advance(60.0) == []
    assert switch.stack.layer is not None and switch.stack.layer.clients == {}
    assert switch.clock.pending == 0  # nothing of the call is left on the clock


def test_reinvite_info_and_refer_in_the_dialog() -> None:
    switch = Switch()
    caller, invite = answered_call(switch)
    hold = OFFER.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n")
    sent = switch.feed(caller.request("INVITE", body=hold), CUSTOMER)
    reinvite = only_request(sent, V1, "INVITE")
    assert reinvite.call_id == invite.call_id and reinvite.body == hold.encode()
    assert reinvite.cseq.number == 2 and reinvite.to.tag == "vtag"
    assert [s.addr for s in sent] == [V1]

    # A second re-INVITE while the first is pending: 491 (RFC 3261 14.1).
    sent = switch.feed(caller.request("INVITE", body=hold), CUSTOMER)
    assert statuses(sent) == [491] and requests(sent, V1, "INVITE") == []

    sent = switch.feed(reply(reinvite, 200, "OK", contact=f"<sip:{CALLEE}@127.0.0.20:5060>",
                             body=ANSWER), V1_PEER)
    ok = only_response(sent, 200)
    assert ok.cseq.number == caller.cseq - 1 and ok.body == ANSWER.encode()
    assert ok.get("Contact") == f"<sip:softswitch@{HOST}:5060>"
    ack = caller.request("ACK").replace(f"CSeq: {caller.cseq} ACK",
                                         f"CSeq: {caller.cseq - 2} ACK")
    sent = switch.feed(ack, CUSTOMER)
    relayed_ack = only_request(sent, V1, "ACK")
    assert relayed_ack.cseq.number == reinvite.cseq.number

    info = caller.request("INFO", body="Signal=5\r\nDuration=160\r\n",
                          content_type="application/dtmf-relay")
    sent = switch.feed(info, CUSTOMER)
    out = only_request(sent, V1, "INFO")
    assert out.get("Content-Type") == "application/dtmf-relay"
    assert out.body == b"Signal=5\r\nDuration=160\r\n"
    sent = switch.feed(reply(out, 200, "OK"), V1_PEER)
    assert statuses(sent) == [200]

    sent = switch.feed(caller.request("REFER", extra="Refer-To: <sip:5555@127.0.0.10>\r\n"),
                       CUSTOMER)
    assert statuses(sent) == [501] and to(sent, V1) == []
    assert len(switch.board.calls) == 1  # the call goes on


def test_a_bye_with_another_dialogs_tag_does_not_end_the_call() -> None:
    switch = Switch()
    caller, _invite = answered_call(switch)
    caller.to_tag = "not-ours"
    sent = switch.feed(caller.request("BYE"), CUSTOMER)
    assert statuses(sent) == [481]
    assert to(sent, V1) == [] and len(switch.board.calls) == 1


def test_an_out_of_order_bye_is_500() -> None:
    switch = Switch()
    caller, _invite = answered_call(switch)
    caller.cseq = -1  # the next request carries CSeq 0, below the INVITE's 1
    sent = switch.feed(caller.request("BYE"), CUSTOMER)
    assert statuses(sent) == [500]
    assert to(sent, V1) == [] and len(switch.board.calls) == 1


# -- failover -------------------------------------------------------------------------------


def test_a_vendor_failure_moves_the_call_to_the_next_vendor() -> None:
    switch = Switch()
    caller, first = start_call(switch)
    sent = switch.feed(vendor_reply(first, 503, "Service Unavailable"), V1_PEER)
    ack = only_request(sent, V1, "ACK")  # the 503 ACKed in its transaction (17.1.1.3)
    assert ack.top_via.branch == first.top_via.branch and ack.to.tag == "vtag"
    second = only_request(sent, V2, "INVITE")
    assert second.call_id not in (first.call_id, caller.call_id)
    assert second.max_forwards == 69 and second.uri == f"sip:{CALLEE}@127.0.0.21:5060"
    assert to(sent, CUSTOMER_ADDR) == []  # the caller hears nothing of the first vendor
    assert switch.count("routing", 1) == 0 and switch.count("routing", 2) == 1
    assert first.call_id not in switch.board.legs

    sent = switch.feed(vendor_reply(second, 200, "OK", ANSWER), V2_PEER)
    assert only_response(sent, 200).body == ANSWER.encode()
    caller.to_tag = only_response(sent, 200).to.tag
    switch.feed(caller.ack(), CUSTOMER)
    sent = switch.feed(caller.request("BYE"), CUSTOMER)
    assert only_request(sent, V2, "BYE").call_id == second.call_id
    assert_idle(switch)
    row = switch.writer.cdr()
    assert row["routing_gateway_id"] == 2 and row["final_code"] == 200
    attempts = switch.writer.attempts
    assert len(attempts) == 2
    assert switch.writer.codes() == [(503, "failed"), (200, "answered")]
    assert [a["routing_gateway_id"] for a in attempts] == [1, 2]
    assert [a["target"] for a in attempts] == ["127.0.0.20:5060", "127.0.0.21:5060"]
    assert attempts[0]["cdr_uuid"] == row["cdr_uuid"] is not None


@pytest.mark.parametrize(("first", "second", "heard"), [
    (503, 503, 503),
    (503, 404, 404),  # a number problem over a vendor's trouble
    (500, 480, 480),
    (502, 603, 603),
    (407, 502, 503),  # a vendor's challenge is never the caller's business
    (500, 502, 500),
])
def test_every_vendor_failed_the_caller_hears_the_most_telling_code(
        first: int, second: int, heard: int) -> None:
    switch = Switch()
    caller, invite = start_call(switch)
    sent = switch.feed(vendor_reply(invite, first, "Failure"), V1_PEER)
    invite2 = only_request(sent, V2, "INVITE")
    sent = switch.feed(vendor_reply(invite2, second, "Failure"), V2_PEER)
    assert statuses(sent) == [heard]
    final = only_response(sent, heard)
    assert final.to.tag is not None and final.call_id == caller.call_id
    assert only_request(sent, V2, "ACK").top_via.branch == invite2.top_via.branch
    assert_idle(switch)
    assert switch.board.stats.failed == 1 and switch.board.stats.answered == 0
    row = switch.writer.cdr()
    assert row["final_code"] == heard
    assert row["termination_reason"] == "every routing gateway failed"
    assert row["hangup_by"] == "callee"
    assert switch.writer.codes() == [(first, "failed"), (second, "failed")]

    # The caller's ACK of the failure is absorbed by the INVITE's transaction, which
    # stops retransmitting the final response (Timer G).
    assert switch.feed(caller.ack(final.to.tag, branch=caller.branch), CUSTOMER) == []
    assert switch.advance(5.0) == []


def test_busy_ends_the_call_at_once_by_default() -> None:
    switch = Switch()
    _caller, invite = start_call(switch)
    sent = switch.feed(vendor_reply(invite, 486, "Busy Here"), V1_PEER)
    assert statuses(sent) == [486] and to(sent, V2) == []
    assert switch.writer.cdr()["termination_reason"] == "vendor 486 Busy Here"


@pytest.mark.parametrize(("stop_after_sdp", "heard"), [("On", [183, 503]), ("Off", [183])])
def test_early_media_commits_the_call_to_its_vendor(stop_after_sdp: str,
                                                    heard: list[int]) -> None:
    """docs/failover.md: v1 183+SDP then 503, v2: stop after SDP On -> 183, 503;
    Off -> v1, v2."""
    switch = Switch(values={"SS_SIP_STOP_SWITCH_AFTER_SDP": stop_after_sdp})
    _caller, invite = start_call(switch)
    sent = switch.feed(vendor_reply(invite, 183, "Session Progress", ANSWER), V1_PEER)
    assert only_response(sent, 183).body == ANSWER.encode()
    sent += switch.feed(vendor_reply(invite, 503, "Service Unavailable"), V1_PEER)
    assert statuses(sent) == heard
    assert len(requests(sent, V2, "INVITE")) == (0 if stop_after_sdp == "On" else 1)


@pytest.mark.parametrize("switch_after_ringing", [True, False])
def test_a_ringing_timeout_cancels_the_vendor(switch_after_ringing: bool) -> None:
    """docs/failover.md: v1 180 then nothing, ringing_timeout 1: CANCEL, then v2; with
    switch_after_ringing false, CANCEL and 408."""
    switch = Switch(vendors=[
        routing_gateway(1, V1[0], 0, ringing_timeout=1,
                        switch_after_ringing=switch_after_ringing),
        routing_gateway(2, V2[0], 1)])
    _caller, invite = start_call(switch)
    assert statuses(switch.feed(vendor_reply(invite, 180, "Ringing"), V1_PEER)) == [180]
    assert switch.advance(0.9) == []
    sent = switch.advance(0.2)
    assert only_request(sent, V1, "CANCEL").top_via.branch == invite.top_via.branch
    if not switch_after_ringing:
        assert statuses(sent) == [408] and to(sent, V2) == []
        assert switch.writer.codes() == [(None, "ringing_timeout")]
        return
    invite2 = only_request(sent, V2, "INVITE")
    assert to(sent, CUSTOMER_ADDR) == []
    # v1 answers after all (its 200 raced our CANCEL): ACKed and hung up at once.
    sent = switch.feed(vendor_reply(invite, 200, "OK", ANSWER), V1_PEER)
    assert only_request(sent, V1, "ACK").call_id == invite.call_id
    assert only_request(sent, V1, "BYE").call_id == invite.call_id
    assert to(sent, CUSTOMER_ADDR) == [] and to(sent, V2) == []
    sent = switch.feed(vendor_reply(invite2, 200, "OK", ANSWER), V2_PEER)
    assert statuses(sent) == [200]
    assert switch.count("routing", 1) == 0 and switch.count("routing", 2) == 1


def test_a_silent_vendor_is_resent_the_invite_then_left_for_the_next() -> None:
    switch = Switch()  # SS_SIP_TIMEOUT_INVITE 10 s, resent after 0.5, 1, 2, 4... s
    _caller, invite = start_call(switch)
    sent = switch.advance(9.9)
    resent = requests(sent, V1, "INVITE")
    assert len(resent) == 4  # at 0.5, 1.5, 3.5 and 7.5 s
    assert {r.top_via.branch for r in resent} == {invite.top_via.branch}
    sent = switch.advance(0.2)
    invite2 = only_request(sent, V2, "INVITE")
    assert to(sent, CUSTOMER_ADDR) == []
    switch.advance(10.5)  # the second vendor is silent too: 408
    assert switch.board.calls == {}
    row = switch.writer.cdr()
    assert row["final_code"] == 408 and row["hangup_by"] == "system"
    assert switch.writer.codes() == [(None, "invite_timeout"), (None, "invite_timeout")]
    assert invite2.call_id not in switch.board.legs


def test_retry_after_takes_a_vendor_out_of_routing() -> None:
    switch = Switch()
    _caller, invite = start_call(switch)
    sent = switch.feed(vendor_reply(invite, 503, "Service Unavailable",
                                    extra="Retry-After: 120\r\n"), V1_PEER)
    invite2 = only_request(sent, V2, "INVITE")
    status = {gw["id"]: gw for gw in switch.board.gateway_status()}
    assert status[1]["retry_after_until"] is not None and status[2]["current_calls"] == 1
    assert status[2]["retry_after_until"] is None
    switch.feed(vendor_reply(invite2, 486, "Busy Here"), V2_PEER)

    # The next call goes straight to the second vendor.
    sent = switch.feed(Caller().invite(), CUSTOMER)
    assert statuses(sent) == [100] and to(sent, V1) == []
    only_request(sent, V2, "INVITE")


def test_a_full_vendor_is_skipped() -> None:
    switch = Switch(vendors=[routing_gateway(1, V1[0], 0, capacity=1),
                             routing_gateway(2, V2[0], 1)])
    start_call(switch)
    sent = switch.feed(Caller().invite(), CUSTOMER)
    only_request(sent, V2, "INVITE")
    assert to(sent, V1) == []


def test_a_vendor_disabled_before_its_turn_is_skipped() -> None:
    switch = Switch()
    caller, invite = start_call(switch)
    # A reload disables the second vendor while the first one is being tried.
    switch.gateways.set_routing([routing_gateway(1, V1[0], 0),
                                 dataclasses.replace(routing_gateway(2, V2[0], 1),
                                                     enabled=False)])
    sent = switch.feed(vendor_reply(invite, 500, "Server Internal Error"), V1_PEER)
    assert to(sent, V2) == []
    assert statuses(sent) == [500]
    assert switch.writer.codes() == [(500, "failed")]
    assert_idle(switch)
    assert caller.call_id not in switch.board.legs


def test_no_vendor_for_the_callee_is_404() -> None:
    switch = Switch()
    sent = switch.feed(Caller(callee="3399").invite(), CUSTOMER)
    assert statuses(sent) == [100, 404]
    assert switch.wire.sent and all(addr == CUSTOMER_ADDR for _, addr in switch.wire.sent)
    assert_idle(switch)
    assert switch.writer.cdr()["termination_reason"] == "no routing gateway matches the callee"


# -- retransmissions and CANCEL -------------------------------------------------------------


def test_a_retransmitted_invite_is_absorbed() -> None:
    switch = Switch()
    caller, invite = start_call(switch)
    sent = switch.feed(caller.invite(), CUSTOMER)
    assert statuses(sent) == [100]  # the last provisional again (RFC 3261 17.2.1)
    assert to(sent, V1) == [] and to(sent, V2) == []
    assert len(switch.board.calls) == 1 and switch.board.stats.attempts == 1
    assert switch.stack.stats.retransmissions == 1
    switch.feed(vendor_reply(invite, 180, "Ringing"), V1_PEER)
    sent = switch.feed(caller.invite(), CUSTOMER)
    assert statuses(sent) == [180] and len(sent) == 1


def test_cancel_after_a_provisional_cancels_the_vendor() -> None:
    switch = Switch()
    caller, invite = start_call(switch)
    switch.feed(vendor_reply(invite, 180, "Ringing"), V1_PEER)
    sent = switch.feed(caller.cancel(), CUSTOMER)
    ok = [s.response for s in to(sent, CUSTOMER_ADDR) if s.response.cseq.method == "CANCEL"]
    assert [r.status for r in ok] == [200]
    terminated = only_response(sent, 487)
    assert terminated.cseq.method == "INVITE" and terminated.to.tag is not None
    cancel = only_request(sent, V1, "CANCEL")
    assert cancel.top_via.branch == invite.top_via.branch  # RFC 3261 9.1
    assert cancel.call_id == invite.call_id and cancel.cseq.number == invite.cseq.number
    assert cancel.uri == invite.uri and cancel.to.tag is None
    assert_idle(switch)
    row = switch.writer.cdr()
    assert row["final_code"] == 487 and row["hangup_by"] == "caller"
    assert row["termination_reason"] == "caller CANCEL"

    # The vendor's 200 for the CANCEL and 487 for the INVITE: the 487 is ACKed, nothing
    # reaches the caller.
    switch.feed(reply(cancel, 200, "OK", "vtag"), V1_PEER)
    sent = switch.feed(vendor_reply(invite, 487, "Request Terminated"), V1_PEER)
    assert [s.addr for s in sent] == [V1] and sent[0].request.method == "ACK"
    # Unacknowledged, the 487 is resent; the caller's ACK stops it.
    assert statuses(switch.advance(0.6)) == [487]
    assert switch.feed(caller.ack(terminated.to.tag, branch=caller.branch), CUSTOMER) == []
    assert switch.advance(40.0) == []
    assert switch.stack.layer is not None and switch.stack.layer.servers == {}


def test_cancel_before_any_provisional_waits_for_the_first_one() -> None:
    switch = Switch()
    caller, invite = start_call(switch)
    sent = switch.feed(caller.cancel(), CUSTOMER)
    assert sorted(statuses(sent)) == [200, 487]
    assert to(sent, V1) == []  # no CANCEL before a provisional (RFC 3261 9.1)
    sent = switch.feed(vendor_reply(invite, 180, "Ringing"), V1_PEER)
    assert only_request(sent, V1, "CANCEL").top_via.branch == invite.top_via.branch
    assert to(sent, CUSTOMER_ADDR) == []  # the call is over for the caller
    # The vendor answers anyway (the 200 raced the CANCEL): ACKed, then BYEd.
    sent = switch.feed(vendor_reply(invite, 200, "OK", ANSWER), V1_PEER)
    assert only_request(sent, V1, "ACK").call_id == invite.call_id
    assert only_request(sent, V1, "BYE").call_id == invite.call_id
    assert to(sent, CUSTOMER_ADDR) == []
    assert_idle(switch)
    assert len(switch.writer.cdrs) == 1


def test_cancel_of_an_unknown_invite_is_481() -> None:
    switch = Switch()
    sent = switch.feed(Caller().cancel(), CUSTOMER)
    assert statuses(sent) == [481]


def test_a_cancel_after_the_answer_changes_nothing() -> None:
    switch = Switch()
    caller, invite = start_call(switch)
    switch.feed(vendor_reply(invite, 200, "OK", ANSWER), V1_PEER)
    sent = switch.feed(caller.cancel(), CUSTOMER)
    assert statuses(sent) == [200]  # RFC 3261 9.2: the CANCEL has no effect
    assert to(sent, V1) == [] and len(switch.board.calls) == 1


def test_a_cancel_crossing_the_final_response_is_answered_200() -> None:
    switch = Switch()
    caller, invite = start_call(switch)
    switch.feed(vendor_reply(invite, 486, "Busy Here"), V1_PEER)  # 486 to the caller
    sent = switch.feed(caller.cancel(), CUSTOMER)  # ...crossing the caller's CANCEL
    assert statuses(sent) == [200]


def test_a_cancel_inside_a_dialog_is_481_and_a_required_extension_never_refuses_one() -> None:
    switch = Switch()
    caller, invite = start_call(switch)
    sent = switch.feed(vendor_reply(invite, 180, "Ringing"), V1_PEER)
    caller.to_tag = only_response(sent, 180).to.tag
    in_dialog = caller.cancel().replace(f"<sip:{CALLEE}@{HOST}>\r\nCall-ID",
                                        f"<sip:{CALLEE}@{HOST}>;tag={caller.to_tag}\r\nCall-ID")
    sent = switch.feed(in_dialog, CUSTOMER)
    assert statuses(sent) == [481] and len(switch.board.calls) == 1
    # A CANCEL is never refused for its Require (RFC 3261 8.2.2.3): it cancels. (Another
    # call: a CANCEL of the same INVITE would be the first one's retransmission.)
    caller, invite = start_call(switch)
    switch.feed(vendor_reply(invite, 180, "Ringing"), V1_PEER)
    sent = switch.feed(caller.cancel().replace("Content-Length", "Require: foo\r\n"
                                               "Content-Length"), CUSTOMER)
    assert sorted(statuses(sent)) == [200, 487]
    only_request(sent, V1, "CANCEL")


def test_bye_from_the_caller_before_the_answer_ends_the_call_as_a_cancel() -> None:
    switch = Switch()
    caller, invite = start_call(switch)
    sent = switch.feed(vendor_reply(invite, 180, "Ringing"), V1_PEER)
    caller.to_tag = only_response(sent, 180).to.tag
    sent = switch.feed(caller.request("BYE"), CUSTOMER)
    assert sorted(statuses(sent)) == [200, 487]
    only_request(sent, V1, "CANCEL")
    assert_idle(switch)


# -- answered at once -----------------------------------------------------------------------


def test_options_from_the_customer_gets_200_with_allow() -> None:
    switch = Switch()
    options = Caller().invite().replace("INVITE", "OPTIONS")
    sent = switch.feed(options, CUSTOMER)
    ok = only_response(sent, 200)
    allowed = {m.strip() for m in ok.get_all("Allow")}
    assert {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"} <= allowed
    assert ok.cseq.method == "OPTIONS" and len(sent) == 1
    assert switch.board.calls == {}


@pytest.mark.parametrize("method", ["BYE", "INFO", "UPDATE", "PRACK"])
def test_an_in_dialog_method_outside_a_dialog_is_481(method: str) -> None:
    switch = Switch()
    caller = Caller()
    request = caller.invite().replace("INVITE", method)
    sent = switch.feed(request, CUSTOMER)
    assert statuses(sent) == [481]


def test_a_bye_for_an_unknown_dialog_is_481_to_the_customer() -> None:
    switch = Switch()
    caller = Caller(to_tag="gone")
    sent = switch.feed(caller.request("BYE"), CUSTOMER)
    assert statuses(sent) == [481]
    assert only_response(sent, 481).call_id == caller.call_id


@pytest.mark.parametrize("method", ["SUBSCRIBE", "REGISTER", "MESSAGE"])
def test_other_methods_from_the_customer_get_405_with_allow(method: str) -> None:
    switch = Switch()
    sent = switch.feed(Caller().invite().replace("INVITE", method), CUSTOMER)
    refused = only_response(sent, 405)
    assert "INVITE" in {m.strip() for m in refused.get_all("Allow")}
    assert switch.board.calls == {} and switch.bindings.all() == []


def test_an_invite_from_a_vendor_is_challenged_never_a_call() -> None:
    """docs/security.md rule 4: vendors do not originate calls; a vendor's INVITE goes
    on to the challenge (a carrier that is also a password-mode customer answers it).
    (docs/calls.md's table says 403; the code and docs/security.md challenge.)"""
    switch = Switch(values={"SS_REPLY_UNAUTHORIZED": "Off"})
    sent = switch.feed(Caller(source=V1_PEER).invite(), V1_PEER)
    assert statuses(sent, V1) == [401]
    assert switch.board.calls == {} and switch.board.stats.attempts == 0
    # Anything else from a vendor is the vendor's: an OPTIONS ping is answered.
    options = Caller(source=V1_PEER).invite().replace("INVITE", "OPTIONS")
    assert statuses(switch.feed(options, V1_PEER), V1) == [200]


def test_max_forwards_zero_is_483() -> None:
    switch = Switch()
    sent = switch.feed(Caller().invite(max_forwards=0), CUSTOMER)
    assert statuses(sent) == [483] and len(sent) == 1
    assert switch.board.stats.too_many_hops == 1
    assert_idle(switch)


def test_max_forwards_one_still_goes_out_with_zero() -> None:
    switch = Switch()
    sent = switch.feed(Caller().invite(max_forwards=1), CUSTOMER)
    assert only_request(sent, V1, "INVITE").max_forwards == 0


def test_our_own_invite_coming_back_is_a_loop() -> None:
    switch = Switch()
    _caller, invite = start_call(switch)
    ours = invite.get_all("Via")[0]
    looped = Caller()
    sent = switch.feed(looped.invite(vias=[ours]), CUSTOMER)
    assert statuses(sent) == [482] and to(sent, V1) == []
    assert switch.board.stats.loops == 1 and len(switch.board.calls) == 1
    # A Via of ours whose branch is no live attempt is no loop.
    stale = ours.replace(invite.top_via.branch or "", "z9hG4bKdead")
    sent = switch.feed(Caller().invite(vias=[stale]), CUSTOMER)
    assert statuses(sent) == [100]


def test_a_second_invite_with_a_live_calls_call_id_is_482() -> None:
    switch = Switch()
    caller, _invite = start_call(switch)
    again = Caller(call_id=caller.call_id, tag=caller.tag)  # a new branch: no retransmission
    sent = switch.feed(again.invite(), CUSTOMER)
    assert statuses(sent) == [482]
    assert len(switch.board.calls) == 1


def test_capacity_full_is_503_for_the_next_call() -> None:
    switch = Switch(capacity=1)
    caller, invite = start_call(switch)
    sent = switch.feed(Caller().invite(), CUSTOMER)
    assert statuses(sent) == [503] and to(sent, V1) == [] and to(sent, V2) == []
    assert switch.board.stats.rejected_capacity == 1
    assert switch.count("gateway", 1) == 1
    # Once the first call ends, the next one is admitted.
    switch.feed(vendor_reply(invite, 486, "Busy Here"), V1_PEER)
    start_call(switch)
    assert caller.call_id not in switch.board.legs


def test_an_overloaded_engine_refuses_new_calls_statelessly() -> None:
    switch = Switch()
    switch.board.overloaded = lambda: True
    caller = Caller()
    sent = switch.feed(caller.invite(), CUSTOMER)
    refused = only_response(sent, 503)
    assert refused.get("Retry-After") == "2"
    assert switch.board.stats.rejected_overload == 1
    assert switch.stack.layer is not None and switch.stack.layer.servers == {}
    assert_idle(switch)


def test_a_required_extension_we_lack_is_420() -> None:
    switch = Switch()
    sent = switch.feed(Caller().invite(extra="Require: 100rel, foo\r\n"), CUSTOMER)
    refused = only_response(sent, 420)
    assert refused.get_all("Unsupported") == ["100rel", "foo"]
    assert switch.board.calls == {}
    sent = switch.feed(Caller().invite(extra="Require: timer\r\n"), CUSTOMER)
    assert statuses(sent) == [100]


# -- unknown sources ------------------------------------------------------------------------


def test_an_invite_from_an_unknown_source_is_dropped_when_reply_unauthorized_is_off() -> None:
    switch = Switch(values={"SS_REPLY_UNAUTHORIZED": "Off"})
    sent = switch.feed(Caller(source=STRANGER).invite(), STRANGER)
    assert sent == []
    assert switch.board.stats.dropped_unknown == 1
    assert switch.board.stats.attempts == 0 and switch.board.calls == {}
    assert switch.stack.layer is not None and switch.stack.layer.servers == {}


def test_an_invite_from_an_unknown_source_is_challenged_by_default() -> None:
    """SS_REPLY_UNAUTHORIZED is On by default (docs/parameters.md): a challenge, the
    same whoever the request names, and no call."""
    switch = Switch()
    sent = switch.feed(Caller(source=STRANGER).invite(), STRANGER)
    challenge = only_response(sent, 401, (STRANGER.host, STRANGER.port))
    assert (challenge.get("WWW-Authenticate") or "").startswith("Digest ")
    assert switch.board.stats.dropped_unknown == 0 and switch.board.calls == {}
    assert switch.stack.layer is not None and switch.stack.layer.servers == {}


def test_in_dialog_requests_from_an_unknown_source() -> None:
    on = Switch()
    sent = on.feed(Caller(source=STRANGER, to_tag="x").request("BYE"), STRANGER)
    assert statuses(sent, (STRANGER.host, STRANGER.port)) == [403]
    assert on.board.stats.rejected_unknown == 1
    off = Switch(values={"SS_REPLY_UNAUTHORIZED": "Off"})
    assert off.feed(Caller(source=STRANGER, to_tag="x").request("BYE"), STRANGER) == []
    assert off.feed(Caller(source=STRANGER).cancel(), STRANGER) == []
    assert off.board.stats.dropped_unknown == 2


# -- malformed requests ---------------------------------------------------------------------


@pytest.mark.parametrize(("mangle", "status"), [
    (lambda t: t.replace("Content-Length: ", "Content-Length: x"), 400),
    (lambda t: t.replace("SIP/2.0\r\n", "SIP/3.0\r\n", 1), 505),
    (lambda t: t.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"), 400),
    (lambda t: t.replace(f"INVITE sip:{CALLEE}@{HOST}:5060", "INVITE im:4420001@x"), 416),
])
def test_a_malformed_request_from_the_customer_is_answered(
        mangle: Callable[[str], str], status: int) -> None:
    switch = Switch()
    caller = Caller()
    sent = switch.feed(mangle(caller.invite()), CUSTOMER)
    answer = only_response(sent, status)
    assert len(sent) == 1
    assert answer.call_id == caller.call_id and answer.top_via.branch == caller.branch
    assert switch.board.stats.bad_requests_answered == 1
    assert_idle(switch)


def test_a_malformed_request_from_an_unknown_source_is_dropped() -> None:
    switch = Switch()
    text = Caller(source=STRANGER).invite().replace("Content-Length: ", "Content-Length: x")
    assert switch.feed(text, STRANGER) == []
    assert switch.board.stats.bad_requests_dropped == 1
    assert switch.board.stats.bad_requests_answered == 0


def test_an_unreadable_via_is_answered_back_to_the_source() -> None:
    switch = Switch()
    caller = Caller()
    text = caller.invite().replace(f"Via: {caller.via}", "Via: SIP/2.0/UDP ;;;")
    sent = switch.feed(text, CUSTOMER)
    assert statuses(sent) == [400]


def test_an_invite_with_an_unreadable_from_holds_no_capacity() -> None:
    switch = Switch(capacity=1)
    caller = Caller()
    broken = caller.invite().replace(f"<sip:1001@{CUSTOMER.host}>;tag=",
                                     f"<sip:1001@{CUSTOMER.host};tag=")
    sent = switch.feed(broken, CUSTOMER)
    assert statuses(sent) == [400]  # answered (docs/sip.md)...
    # ...and nothing of it stays: no call counted, no transaction left behind.
    assert switch.count("gateway", 1) == 0
    assert switch.stack.layer is not None and switch.stack.layer.servers == {}
    start_call(switch)  # the customer's next call is admitted


# -- operations -----------------------------------------------------------------------------


def test_hang_up_all_on_an_answered_call() -> None:
    switch = Switch()
    caller, invite = answered_call(switch)
    assert switch.board.active_calls()[0]["call_id_in"] == caller.call_id
    assert switch.board.stats_snapshot()["active"] == 1
    switch.board.hang_up_all("shutdown")
    sent = switch.drain()
    assert only_request(sent, V1, "BYE").call_id == invite.call_id
    assert only_request(sent, CUSTOMER_ADDR, "BYE").call_id == caller.call_id
    assert_idle(switch)
    row = switch.writer.cdr()
    assert row["termination_reason"] == "shutdown" and row["hangup_by"] == "system"
    assert row["final_code"] == 200 and len(switch.writer.cdrs) == 1
    assert switch.board.active_calls() == []


def test_hang_up_all_on_a_ringing_call() -> None:
    switch = Switch()
    _caller, invite = start_call(switch)
    switch.feed(vendor_reply(invite, 180, "Ringing"), V1_PEER)
    switch.board.hang_up_all("shutdown")
    sent = switch.drain()
    assert statuses(sent) == [503]
    assert only_request(sent, V1, "CANCEL").top_via.branch == invite.top_via.branch
    assert_idle(switch)
    assert switch.writer.cdr()["termination_reason"] == "shutdown"


def test_call_numbers_follow_the_workers_residue() -> None:
    switch = Switch()
    switch.board.number_calls(3, 4)  # worker 2 of 4
    start_call(switch)
    start_call(switch)
    assert sorted(switch.board.calls) == [3, 7]


# -- callers behind NAT, session timers -----------------------------------------------------


def test_requests_to_a_caller_behind_nat_go_to_its_source_address() -> None:
    switch = Switch()
    nat = Peer("udp", CUSTOMER.host, 5070)
    asked: list[bool] = []

    def no_relay(invite: Request, origin: Any, caller_nat: bool) -> None:
        asked.append(caller_nat)  # the relay would be wanted (Auto, NAT): none here

    switch.board.media_factory = no_relay
    caller = Caller(source=nat)
    text = caller.invite().replace(f"Contact: <sip:1001@{nat.host}:5070>",
                                   "Contact: <sip:1001@10.0.0.5:5060>")
    sent = switch.feed(text, nat)
    assert statuses(sent, (nat.host, 5070)) == [100]  # rport: back to the source port
    assert asked == [True]
    invite = only_request(sent, V1, "INVITE")
    sent = switch.feed(vendor_reply(invite, 200, "OK", ANSWER), V1_PEER)
    caller.to_tag = only_response(sent, 200, (nat.host, 5070)).to.tag
    switch.feed(caller.ack(), nat)
    sent = switch.feed(vendor_request(invite, "BYE", 2), V1_PEER)
    bye = only_request(sent, (nat.host, 5070), "BYE")
    assert bye.uri == "sip:1001@10.0.0.5:5060"  # the Contact stays the Request-URI
    assert_idle(switch)


def test_a_session_refresh_the_caller_refuses_ends_the_call() -> None:
    switch = Switch()
    caller = Caller()  # asking for session timers (RFC 4028), allowing UPDATE
    extra = "Session-Expires: 180\r\nSupported: timer\r\nAllow: INVITE, ACK, BYE, UPDATE\r\n"
    sent = switch.feed(caller.invite(extra=extra), CUSTOMER)
    invite = only_request(sent, V1, "INVITE")
    assert invite.get("Session-Expires") == "600;refresher=uac"
    sent = switch.feed(vendor_reply(invite, 200, "OK", ANSWER), V1_PEER)
    ok = only_response(sent, 200)
    assert ok.get("Session-Expires") == "180;refresher=uas"
    assert ok.get_all("Require") == ["timer"]
    caller.to_tag = ok.to.tag
    switch.feed(caller.ack(), CUSTOMER)
    assert switch.advance(89.0) == []
    sent = switch.advance(1.2)  # (not 1.5: the UPDATE itself is resent after T1)
    update = only_request(sent, CUSTOMER_ADDR, "UPDATE")  # every 180/2 s
    assert update.call_id == caller.call_id and update.body == b""
    sent = switch.feed(reply(update, 481, "Call Does Not Exist"), CUSTOMER)
    assert only_request(sent, V1, "BYE").call_id == invite.call_id
    assert_idle(switch)
    assert switch.writer.cdr()["termination_reason"] == "session refresh failed (caller 481)"


# -- phones and vendors calling in ----------------------------------------------------------


def _register(auth: str = "", cseq: int = 1) -> str:
    src = PHONE_SRC
    return (f"REGISTER sip:{HOST} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {src.host}:{src.port};branch=z9hG4bK-g{next(_ids)};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{PHONE.username}@{HOST}>;tag=reg1\r\n"
            f"To: <sip:{PHONE.username}@{HOST}>\r\n"
            f"Call-ID: reg-{PHONE.username}\r\nCSeq: {cseq} REGISTER\r\n"
            f"Contact: <sip:{PHONE.username}@{src.host}:{src.port}>\r\n"
            f"Expires: 300\r\n{auth}Content-Length: 0\r\n\r\n")


def phone_authorization(challenge: Response) -> str:
    """The phone's Authorization header line answering a REGISTER's challenge."""
    _scheme, params = parse_auth_params(challenge.first_raw("WWW-Authenticate") or "")
    uri = f"sip:{HOST}"
    digest = response_digest(params["algorithm"], PHONE.username, params["realm"],
                             PHONE.password, "REGISTER", uri, params["nonce"], "00000001",
                             "c0ffee", "auth")
    return (f'Authorization: Digest username="{PHONE.username}",realm="{params["realm"]}",'
            f'nonce="{params["nonce"]}",uri="{uri}",response="{digest}",'
            f'algorithm={params["algorithm"]},qop=auth,nc=00000001,cnonce="c0ffee"\r\n')


def register_phone(switch: Switch) -> None:
    """The phone's REGISTER, its challenge, and the REGISTER with its credentials."""
    addr = (PHONE_SRC.host, PHONE_SRC.port)
    challenge = only_response(switch.feed(_register(), PHONE_SRC), 401, addr)
    auth = phone_authorization(challenge)
    ok = only_response(switch.feed(_register(auth, 2), PHONE_SRC), 200, addr)
    assert ok.get_all("Contact")


def test_a_call_to_a_registered_phone() -> None:
    switch = Switch()
    # Not registered: 480, no INVITE anywhere.
    sent = switch.feed(Caller(callee=PHONE.username).invite(), CUSTOMER)
    assert statuses(sent) == [100, 480] and len(sent) == 2
    assert switch.writer.cdr()["termination_reason"] == "phone not registered"

    register_phone(switch)
    assert [b.username for b in switch.bindings.all()] == [PHONE.username]
    addr = (PHONE_SRC.host, PHONE_SRC.port)
    sent = switch.feed(Caller(callee=PHONE.username).invite(), CUSTOMER)
    invite = only_request(sent, addr, "INVITE")
    assert invite.uri == f"sip:{PHONE.username}@{PHONE_SRC.host}:{PHONE_SRC.port}"
    assert switch.count("phone", PHONE.id) == 1
    assert to(sent, V1) == [] and to(sent, V2) == []
    sent = switch.feed(reply(invite, 486, "Busy Here", "ptag"), PHONE_SRC)
    assert statuses(sent) == [486]
    assert switch.count("phone", PHONE.id) == 0
    assert_idle(switch)
    assert switch.writer.cdr()["callee_phone"] == PHONE.username


def test_a_registered_phone_calls_out_and_counts_against_its_capacity() -> None:
    switch = Switch()
    switch.phones.set([PhoneAccount(PHONE.id, PHONE.username, PHONE.password, None, 1, True)])
    register_phone(switch)
    caller = Caller(source=PHONE_SRC)
    text = caller.invite().replace("<sip:1001@", f"<sip:{PHONE.username}@")
    sent = switch.feed(text, PHONE_SRC)  # no challenge: from its live registration
    assert statuses(sent, (PHONE_SRC.host, PHONE_SRC.port)) == [100]
    invite = only_request(sent, V1, "INVITE")
    assert invite.from_.uri.user == PHONE.username
    assert switch.count("phone", PHONE.id) == 1
    # Busy calling out, the phone cannot be called (both directions count).
    sent = switch.feed(Caller(callee=PHONE.username).invite(), CUSTOMER)
    assert statuses(sent) == [100, 486]
    assert to(sent, (PHONE_SRC.host, PHONE_SRC.port)) == []
    assert switch.writer.cdr()["termination_reason"] == "phone at capacity"
    sent = switch.feed(vendor_reply(invite, 404, "Not Found"), V1_PEER)
    switch.feed(vendor_reply(only_request(sent, V2, "INVITE"), 404, "Not Found"), V2_PEER)
    assert switch.count("phone", PHONE.id) == 0
    assert_idle(switch)
    assert switch.writer.cdr()["phone"] == PHONE.username


def test_a_vendor_calling_our_registered_contact_is_routed_elsewhere() -> None:
    switch = Switch()
    asked: list[tuple[Peer, str | None]] = []

    def registered_at(source: Peer, user: str | None) -> int | None:
        asked.append((source, user))
        return 1 if source.host == V1[0] else None

    switch.board.upstream_vendor = registered_at
    caller = Caller(source=V1_PEER)
    text = caller.invite().replace(f"INVITE sip:{CALLEE}@", "INVITE sip:trunk-user@")
    sent = switch.feed(text, V1_PEER)
    assert asked == [(V1_PEER, "trunk-user")]
    assert statuses(sent, V1) == [100]
    invite = only_request(sent, V2, "INVITE")  # never back to the vendor it came from
    assert invite.ruri.user == CALLEE  # the number it dialled (To)
    assert switch.count("vendor", 1) == 1
    switch.feed(vendor_reply(invite, 486, "Busy Here"), V2_PEER)
    assert switch.count("vendor", 1) == 0
    assert switch.writer.cdr()["origin_vendor"] == "vendor1"


# -- the relay and the DNS: a call's coroutines on the event loop ---------------------------


def relay_on(switch: Switch, plane: FakePlane) -> None:
    """The switch's media relay: the fake plane, anchors as the engine makes them."""
    board = switch.board
    board.media_plane = plane  # type: ignore[assignment]
    board.media_factory = lambda invite, origin, nat: MediaAnchor(
        board.params, "127.0.0.1", caller_nat=nat, caller_encrypted=origin.rtp_encryption,
        streams=stream_count(invite.body))


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_relayed_call_waits_for_its_ports_and_crosses_the_relay() -> None:
    async def scenario() -> None:
        switch = Switch(values={"SS_MEDIAPROXYMODE": "On"})
        plane = FakePlane()
        relay_on(switch, plane)
        caller = Caller()
        sent = switch.feed(caller.invite(), CUSTOMER)
        assert statuses(sent) == [100] and to(sent, V1) == []  # the ports first
        await _settle()
        invite = only_request(switch.drain(), V1, "INVITE")
        session, = plane.sessions
        assert session.started == 1 and ("nat", "b", False) in session.calls
        assert session.remotes["a"][:2] == ("127.0.0.10", 4000)
        assert b"c=IN IP4 127.0.0.1\r\n" in invite.body and b"m=audio 40002 " in invite.body
        sent = switch.feed(vendor_reply(invite, 200, "OK", ANSWER), V1_PEER)
        ok = only_response(sent, 200)
        assert b"c=IN IP4 127.0.0.20" not in ok.body and b"m=audio 40000 " in ok.body
        assert session.remotes["b"][:2] == ("127.0.0.20", 5000)
        session.on_rtp_start()  # reported by the relay: fed to the call, nothing sent
        assert switch.drain() == []
        assert switch.board.active_calls()[0]["media"]["relayed"] is True
        caller.to_tag = ok.to.tag
        switch.feed(caller.ack(), CUSTOMER)

        # A re-INVITE adding video: the relay's ports for it first, then the offer.
        video = OFFER + "m=video 4002 RTP/AVP 96\r\n"
        sent = switch.feed(caller.request("INVITE", body=video), CUSTOMER)
        assert sent == []
        await _settle()
        reinvite = only_request(switch.drain(), V1, "INVITE")
        assert len(plane.sessions) == 2 and b"m=video 40006 RTP/AVP 96" in reinvite.body
        assert b"c=IN IP4 127.0.0.10" not in reinvite.body
        sent = switch.feed(reply(reinvite, 200, "OK", body=ANSWER), V1_PEER)
        assert b"m=audio 40000 " in only_response(sent, 200).body

        plane.sessions[1].final = counters(leg_counters(42, 4200))
        switch.feed(caller.request("BYE"), CUSTOMER)
        assert_idle(switch)
        assert [s.closed for s in plane.sessions] == [1, 1]
        media = json.loads(switch.writer.cdr()["media"])  # the relay's final counters
        assert media["relayed"] is True and media["caller_to_callee_packets"] == 42
        assert [s["media"] for s in media["streams"]] == ["audio", "video"]

    asyncio.run(scenario())


def test_no_relay_ports_is_503_to_the_caller() -> None:
    async def scenario() -> None:
        switch = Switch(values={"SS_MEDIAPROXYMODE": "On"})
        plane = FakePlane()
        plane.fail[0] = OSError("no free port pair")
        relay_on(switch, plane)
        sent = switch.feed(Caller().invite(), CUSTOMER)
        assert statuses(sent) == [100]
        await _settle()
        sent = switch.drain()
        assert statuses(sent) == [503] and to(sent, V1) == []
        assert [s.closed for s in plane.sessions] == [1]
        assert_idle(switch)
        assert switch.writer.cdr()["termination_reason"] == "no media port free"

    asyncio.run(scenario())


class StubResolver:
    """The vendor resolver with a cold cache: every plan needs a lookup first."""

    def __init__(self, answers: dict[str, Plan]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def plan(self, gw: RoutingGateway) -> Plan:
        return Plan(missing=((gw.host, "A"),))

    async def resolve(self, gw: RoutingGateway) -> Plan:
        self.asked.append(gw.host)
        return self.answers[gw.host]

    def snapshot(self) -> dict[str, object]:
        return {"queries": len(self.asked)}


def test_vendors_by_dns_name_are_resolved_before_their_invite() -> None:
    async def scenario() -> None:
        switch = Switch(vendors=[routing_gateway(1, "nowhere.test", 0),
                                 routing_gateway(2, "vendor.test", 1)])
        resolver = StubResolver({
            "nowhere.test": Plan(failure="no address for nowhere.test (no such name)"),
            "vendor.test": Plan(targets=(Target("vendor.test", V2[0], V2[1]),)),
        })
        switch.board.resolver = resolver  # type: ignore[assignment]
        sent = switch.feed(Caller().invite(), CUSTOMER)
        assert statuses(sent) == [100] and len(sent) == 1
        await _settle()
        invite = only_request(switch.drain(), V2, "INVITE")  # the address found
        assert invite.uri == f"sip:{CALLEE}@vendor.test:5060"  # the name, as configured
        assert resolver.asked == ["nowhere.test", "vendor.test"]
        assert switch.board.stats.dns_failures == 1
        assert switch.board.stats_snapshot()["dns"] == {"queries": 2}
        switch.feed(reply(invite, 486, "Busy Here", "vtag"), V2_PEER)
        assert switch.writer.codes() == [(None, "dns_failure"), (486, "failed")]
        assert switch.writer.attempts[0]["target"] is None
        assert_idle(switch)

    asyncio.run(scenario())


def test_the_routing_dry_run_reads_the_switchboards_counts_and_holds() -> None:
    """The routing dry run (b2bua/calls/dryrun.py) over a real switchboard: the vendor a
    503 with Retry-After took out of routing, and the one a call now fills, are out with
    the state routing reads; nothing is counted for the dry run itself."""
    from b2bua.calls.dryrun import Admission, explain_call
    from b2bua.calls.endpoints import Origin
    from b2bua.routing.dns import ip_plan

    switch = Switch(vendors=[routing_gateway(1, V1[0], 0),
                             routing_gateway(2, V2[0], 1, capacity=1)])
    _caller, invite = start_call(switch)
    sent = switch.feed(vendor_reply(invite, 503, "Service Unavailable",
                                    extra="Retry-After: 120\r\n"), V1_PEER)
    only_request(sent, V2, "INVITE")
    origin = Origin.gateway(switch.gateways.mapping[1])
    now = switch.clock.time()
    result = explain_call(switch.board, origin, "1001", CALLEE, now,
                          Admission(True, switch.count("gateway", 1)))
    views = {view["name"]: view for view in result["gateways"]}
    assert views["vendor1"]["reason"] == "retry_after"
    assert 110 < views["vendor1"]["retry_after_until"] - now <= 121
    assert (views["vendor2"]["reason"], views["vendor2"]["current_calls"]) == ("full", 1)
    assert result["origin"]["current_calls"] == 1
    assert result["result"]["code"] == 503 and result["route"] == []
    assert switch.count("routing", 2) == 1 and switch.count("routing_total", 1) == 1
    gw = switch.gateways.routing[1]
    assert switch.board.peek_vendor(gw) == ip_plan(gw.host, 5060)
