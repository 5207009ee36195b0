"""Drives one call's core (b2bua/calls/call.py) without sockets or clocks: a context
answering its questions from plain objects, a fake clock, and a ledger that carries out
its actions as the adapter would, keeping what a test asserts on (what each leg was
sent, timers, capacity, watched legs, CDRs)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from b2bua.calls.actions import (
    CallAction,
    CallEnded,
    CancelInvite,
    CancelTimer,
    CheckMedia,
    Confirm,
    ForgetLeg,
    GrowMedia,
    HoldGateway,
    NoteAnswered,
    NoteStarted,
    Occupy,
    Release,
    Reserve,
    Resolve,
    Respond,
    Send,
    SetTimer,
    StartMedia,
    StopMedia,
    Transact,
    Unreserve,
    UpdateMedia,
    WatchLeg,
    WriteCdr,
)
from b2bua.calls.anchor import MediaAnchor, StreamUpdate, stream_count
from b2bua.calls.call import Call
from b2bua.calls.cdr import CdrRecord
from b2bua.calls.endpoints import Destination, Origin
from b2bua.calls.events import (
    AckReceived,
    CallEvent,
    InDialogRequest,
    MediaReport,
    MediaStarted,
    NoReply,
    Reply,
    Reserved,
    Side,
    TimerFired,
)
from b2bua.calls.switchboard import CallStats
from b2bua.config.live import Params
from b2bua.controls.duration import call_limit
from b2bua.controls.rates import CallRate
from b2bua.numbers.rules import NumberTables
from b2bua.registrar.bindings import Binding
from b2bua.routing.dns import Plan, ip_plan
from b2bua.routing.gateways import RoutingGateway
from b2bua.routing.select import RoutePlan, plan_route
from b2bua.routing.weights import WeightedTurns
from b2bua.sip.message import Request, Response, make_response
from b2bua.sip.parser import parse_message
from b2bua.sip.peer import Peer
from b2bua.sip.transaction import ServerTransaction

CALLER = Peer("udp", "192.0.2.10", 5060)
ORIGIN = Origin("gateway", 1, "customer", None)
START = 1_000_000.0  # the fake clock's epoch

OFFER = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n"
         b"t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
ANSWER = (b"v=0\r\no=- 2 2 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\n"
          b"t=0 0\r\nm=audio 5000 RTP/AVP 0\r\n")


def vendor(gw_id: int, prefix: str = "", priority: int = 0, **fields: Any) -> RoutingGateway:
    return RoutingGateway(id=gw_id, name=f"v{gw_id}", host=f"203.0.113.{gw_id}", port=5060,
                          transport="udp", prefixes=(prefix,) if prefix else (),
                          priority=priority, prefix_mode="terminate",
                          capacity=fields.pop("capacity", None),
                          enabled=fields.pop("enabled", True), **fields)


# A registered phone's binding as a destination (user alice, number 4420).
PHONE_DESTINATION = Destination(
    Peer("udp", "192.0.2.50", 5062), "sip:alice@192.0.2.50:5062", "<sip:4420@198.51.100.1>",
    binding=Binding("alice", "sip:alice@192.0.2.50:5062", Peer("udp", "192.0.2.50", 5062),
                    False, START + 3600, START, "phone/1", "reg-1"))


def invite_request(callee: str = "4420", caller: str = "1001", body: bytes = OFFER,
                   call_id: str = "in-1", extra: str = "") -> Request:
    text = (f"INVITE sip:{callee}@198.51.100.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKcaller1\r\n"
            f"From: <sip:{caller}@192.0.2.10>;tag=caller-tag\r\n"
            f"To: <sip:{callee}@198.51.100.1>\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: 1 INVITE\r\n"
            f"Contact: <sip:{caller}@192.0.2.10:5060>\r\n"
            f"Max-Forwards: 70\r\n"
            f"{extra}"
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body)}\r\n\r\n")
    message = parse_message(text.encode() + body)
    assert isinstance(message, Request)
    return message


class FakeServer:
    """A server transaction handle: the core never calls it; the ledger records."""

    def __init__(self, request: Request) -> None:
        self.request = request


def server_for(request: Request) -> ServerTransaction:
    return cast(ServerTransaction, FakeServer(request))


@dataclass
class Context:
    """The switch as a call sees it (b2bua.calls.context.CallContext)."""

    gateways: list[RoutingGateway] = field(default_factory=list)
    params: Params = field(default_factory=Params)
    numbers: NumberTables = field(default_factory=NumberTables)
    node: str = ""
    stats: CallStats = field(default_factory=CallStats)
    occupied: dict[int, int] = field(default_factory=dict)  # by routing gateway id
    held_until: dict[int, float] = field(default_factory=dict)
    plans: dict[int, Plan] = field(default_factory=dict)  # by gateway id; else its IP
    phones: dict[str, tuple[Destination | None, int, str]] = field(default_factory=dict)
    relay: bool = False  # the engine has a media relay: relayed calls get an anchor
    # A cluster node's shared counts (the cluster's calls now, by counter) and the phone
    # capacities it reserves against; None: a switch on its own, nothing reserved.
    cluster: dict[tuple[str, int], int] | None = None
    phone_capacity: dict[str, tuple[int, int]] = field(default_factory=dict)  # id, cap
    advertised_host: str = "198.51.100.1"
    sent_by: str = "198.51.100.1:5060"
    turns: WeightedTurns = field(default_factory=WeightedTurns)
    # Gateways at their call rate (their Reserve is refused with "rate").
    over_rate: set[int] = field(default_factory=set)
    # A range's draw: the lower bound unless a test sets another choice.
    draw: Callable[[int, int], int] = lambda low, high: low
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def contact(self, transport: str) -> str:
        return f"<sip:softswitch@{self.advertised_host}:5060;transport={transport}>"

    def new_call_id(self) -> str:
        return f"out-{next(self._ids)}"

    def phone_destination(self, callee: str, now: float
                          ) -> tuple[Destination | None, int, str] | None:
        return self.phones.get(callee)

    def plan_route(self, callee: str, now: float) -> RoutePlan:
        return plan_route(callee, self.gateways, lambda i: self.occupied.get(i, 0),
                          lambda i: 0, lambda i: self.held_until.get(i, 0.0) > now,
                          self.turns)

    def duration_limit(self, origin: Origin) -> int:
        return call_limit(origin.max_duration, self.params["SS_MAX_CALL_DURATION"], self.draw)

    def gateway_usable(self, gw: RoutingGateway, now: float) -> bool:
        if not gw.enabled:
            return False
        if gw.capacity is not None and self.occupied.get(gw.id, 0) >= gw.capacity:
            return False
        return self.held_until.get(gw.id, 0.0) <= now

    def vendor_plan(self, gw: RoutingGateway) -> Plan:
        return self.plans.get(gw.id) or ip_plan(gw.host, gw.port or 5060)

    def reservation(self, hop: Destination | RoutingGateway
                    ) -> tuple[tuple[str, int], int | None, CallRate | None] | None:
        if isinstance(hop, RoutingGateway):
            capacity = hop.capacity if self.cluster is not None else None
            if capacity is None and hop.call_rate is None:
                return None
            return ("routing", hop.id), capacity, hop.call_rate
        if self.cluster is None:
            return None
        if hop.binding is not None and hop.binding.username in self.phone_capacity:
            phone_id, capacity = self.phone_capacity[hop.binding.username]
            return ("phone", phone_id), capacity, None
        return None

    def cluster_key(self, destination: Destination) -> tuple[str, int] | None:
        """The shared counter a leg to ``destination`` counts under, if any."""
        if self.cluster is None:
            return None
        wanted = self.reservation(destination.gateway or destination)
        return wanted[0] if wanted is not None else None

    def origin_media_check(self, origin: Origin) -> str:
        return "none"

    def new_media(self, invite: Request, origin: Origin, caller_nat: bool
                  ) -> MediaAnchor | None:
        if not self.relay:
            return None
        return MediaAnchor(self.params, self.advertised_host, caller_nat=caller_nat,
                           caller_encrypted=origin.rtp_encryption,
                           streams=stream_count(invite.body))


@dataclass
class Ledger:
    """What the call's actions did, as the adapter would have done it."""

    to_caller: list[Response] = field(default_factory=list)  # on the INVITE's server
    responses: list[tuple[ServerTransaction, Response]] = field(default_factory=list)
    sent: list[tuple[bytes, Peer]] = field(default_factory=list)
    requests: dict[int, Request] = field(default_factory=dict)  # by token (0: many)
    untracked: list[Request] = field(default_factory=list)  # token 0
    cancels: list[int] = field(default_factory=list)
    timers: dict[str, float] = field(default_factory=dict)  # name -> due
    occupied: dict[Any, int] = field(default_factory=dict)
    watched: set[str] = field(default_factory=set)
    holds: dict[int, float] = field(default_factory=dict)
    reserving: list[Reserve] = field(default_factory=list)  # asked, not answered yet
    unreserved: list[tuple[str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cdrs: list[tuple[CdrRecord, list[dict[str, Any]]]] = field(default_factory=list)
    ended: int = 0
    confirmed: int = 0
    media: list[str] = field(default_factory=list)
    media_updates: list[StreamUpdate] = field(default_factory=list)
    media_checks: int = 0
    actions: list[CallAction] = field(default_factory=list)


def destination_key(destination: Destination) -> Any:
    gw = destination.gateway
    return ("routing", gw.id) if gw is not None else ("peer", destination.peer)


class CallHarness:
    """One call, a fake clock, and a ledger of its actions."""

    def __init__(self, ctx: Context | None = None, invite: Request | None = None,
                 origin: Origin = ORIGIN, source: Peer = CALLER) -> None:
        self.ctx = ctx or Context()
        self.now = START
        self.ledger = Ledger()
        self.invite = invite or invite_request()
        self.server = server_for(self.invite)
        self._cseqs: dict[Side, int] = {}  # the last CSeq each side's peer sent in-dialog
        # What the relay answers CheckMedia with: per leg, seconds since media last came
        # (None: never); by default just now, so no call is silent unless a test says so.
        self.idle: dict[str, float | None] = {"a": 0.0, "b": 0.0}
        self.call = Call(self.ctx, 1, self.invite, source, self.server, origin, self.now)
        self.carry_out(self.call.begin(self.now))

    # -- the clock and the events ----------------------------------------------------------

    def feed(self, event: CallEvent) -> list[CallAction]:
        actions = self.call.handle(event, self.now)
        self.carry_out(actions)
        return actions

    def advance(self, seconds: float) -> None:
        """Move the clock, firing every timer due on the way, in order."""
        end = self.now + seconds
        while True:
            due = [(at, name) for name, at in self.ledger.timers.items() if at <= end]
            if not due:
                break
            at, name = min(due)
            del self.ledger.timers[name]
            self.now = max(self.now, at)
            self.feed(TimerFired(name))
        self.now = end

    # -- the destination side --------------------------------------------------------------

    def invite_of(self, seq: int) -> Request:
        attempt = self.call.attempts[seq - 1]
        return self.ledger.requests[attempt.token]

    def answer(self, seq: int, status: int, body: bytes = b"", to_tag: str = "callee-tag",
               headers: tuple[tuple[str, str], ...] = ()) -> list[CallAction]:
        """The destination of attempt ``seq`` answers its INVITE."""
        request = self.invite_of(seq)
        response = make_response(request, status, to_tag=to_tag if status != 100 else None)
        if 100 < status < 300:
            response.add("Contact", f"<sip:callee@203.0.113.{seq}:5060>")
        for name, value in headers:
            response.add(name, value)
        if body:
            response.add("Content-Type", "application/sdp")
            response.body = body
        return self.feed(Reply(self.call.attempts[seq - 1].token, response))

    def silence(self, seq: int) -> list[CallAction]:
        """Attempt ``seq``'s INVITE had no response (Timer B)."""
        return self.feed(NoReply(self.call.attempts[seq - 1].token))

    def reply_to(self, token: int, status: int, body: bytes = b"") -> list[CallAction]:
        request = self.ledger.requests[token]
        response = make_response(request, status, to_tag="x")
        response.body = body
        return self.feed(Reply(token, response))

    # -- the caller side -------------------------------------------------------------------

    def ack_from_caller(self, body: bytes = b"") -> list[CallAction]:
        ack = Request("ACK", str(self.invite.ruri), [
            ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKack"),
            ("From", self.invite.get("From") or ""),
            ("To", f"{self.invite.get('To')};tag={self.call.inbound.local_tag}"),
            ("Call-ID", self.invite.call_id), ("CSeq", "1 ACK")], body)
        return self.feed(AckReceived(Side.CALLER, ack))

    def in_dialog(self, side: Side, method: str, body: bytes = b"",
                  cseq: int | None = None) -> tuple[ServerTransaction, list[CallAction]]:
        """A request from ``side``'s peer in its dialog; its server handle and actions.
        Without ``cseq``, the one after the last this side sent (RFC 3261 12.2.1.1)."""
        if cseq is None:
            cseq = self._cseqs.get(side, 1) + 1
        self._cseqs[side] = max(cseq, self._cseqs.get(side, 1))
        if side is Side.CALLER:
            call_id, tag = self.invite.call_id, self.call.inbound.local_tag
        else:
            outbound = self.call.outbound
            assert outbound is not None
            call_id, tag = outbound.call_id, outbound.local_tag
        headers = [("Via", f"SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bK{method}{cseq}"),
                   ("From", "<sip:peer@192.0.2.99>;tag=peer"),
                   ("To", f"<sip:us@198.51.100.1>;tag={tag}"),
                   ("Call-ID", call_id), ("CSeq", f"{cseq} {method}")]
        if body:
            headers.append(("Content-Type", "application/sdp"))
        request = Request(method, "sip:us@198.51.100.1", headers, body)
        server = server_for(request)
        return server, self.feed(InDialogRequest(side, request, server))

    # -- carrying out the actions ----------------------------------------------------------

    def carry_out(self, actions: list[CallAction]) -> None:
        ledger = self.ledger
        reports = 0  # CheckMedia asked: the relay's MediaReport once these actions ran
        for action in actions:
            ledger.actions.append(action)
            if isinstance(action, Respond):
                ledger.responses.append((action.server, action.response))
                if action.server is self.server:
                    ledger.to_caller.append(action.response)
            elif isinstance(action, Confirm):
                ledger.confirmed += 1
            elif isinstance(action, Send):
                ledger.sent.append((action.data, action.peer))
            elif isinstance(action, Transact):
                if action.token:
                    ledger.requests[action.token] = action.request
                else:
                    ledger.untracked.append(action.request)
            elif isinstance(action, CancelInvite):
                ledger.cancels.append(action.token)
            elif isinstance(action, SetTimer):
                ledger.timers[action.name] = self.now + action.delay
            elif isinstance(action, CancelTimer):
                ledger.timers.pop(action.name, None)
            elif isinstance(action, Reserve):
                ledger.reserving.append(action)
            elif isinstance(action, Unreserve):
                ledger.unreserved.append(action.key)
                self._shared(action.key, -1)
            elif isinstance(action, Occupy):
                if not action.reserved:
                    self._shared(self.ctx.cluster_key(action.destination), 1)
                key = destination_key(action.destination)
                ledger.occupied[key] = ledger.occupied.get(key, 0) + 1
                gw = action.destination.gateway
                if gw is not None:
                    self.ctx.occupied[gw.id] = self.ctx.occupied.get(gw.id, 0) + 1
            elif isinstance(action, Release):
                self._shared(self.ctx.cluster_key(action.destination), -1)
                key = destination_key(action.destination)
                ledger.occupied[key] = ledger.occupied.get(key, 0) - 1
                gw = action.destination.gateway
                if gw is not None:
                    self.ctx.occupied[gw.id] -= 1
            elif isinstance(action, WatchLeg):
                ledger.watched.add(action.call_id)
            elif isinstance(action, ForgetLeg):
                ledger.watched.discard(action.call_id)
            elif isinstance(action, HoldGateway):
                ledger.holds[action.gateway.id] = action.until
                self.ctx.held_until[action.gateway.id] = action.until
            elif isinstance(action, NoteStarted):
                ledger.notes.append("started")
            elif isinstance(action, NoteAnswered):
                ledger.notes.append("answered")
            elif isinstance(action, WriteCdr):
                ledger.cdrs.append((action.record, action.attempts))
            elif isinstance(action, CallEnded):
                ledger.ended += 1
            elif isinstance(action, StartMedia):
                ledger.media.append("start")
            elif isinstance(action, StopMedia):
                ledger.media.append("stop")
            elif isinstance(action, GrowMedia):
                ledger.media.append(f"grow {action.count}")
            elif isinstance(action, UpdateMedia):
                ledger.media_updates += action.updates
            elif isinstance(action, CheckMedia):
                ledger.media_checks += 1
                reports += 1
            elif isinstance(action, Resolve):
                ledger.media.append(f"resolve {action.gateway.id}")
            else:  # pragma: no cover - a new action the harness does not know
                raise AssertionError(f"unknown action {action!r}")
        for _ in range(reports):
            self.feed(MediaReport(dict(self.idle)))

    def _shared(self, key: tuple[str, int] | None, delta: int) -> None:
        cluster = self.ctx.cluster
        if cluster is not None and key is not None:
            cluster[key] = cluster.get(key, 0) + delta

    def reserved(self) -> list[CallAction]:
        """Redis answers the oldest ``Reserve``: granted while the cluster's count is
        under the capacity (the admission script's rule)."""
        ask = self.ledger.reserving.pop(0)
        if ask.rate is not None and ask.key[1] in self.ctx.over_rate:
            return self.feed(Reserved(ask.key, False, "rate"))
        if ask.capacity is None:
            return self.feed(Reserved(ask.key, True))
        cluster = self.ctx.cluster
        assert cluster is not None
        granted = cluster.get(ask.key, 0) < ask.capacity
        if granted:
            cluster[ask.key] = cluster.get(ask.key, 0) + 1
        return self.feed(Reserved(ask.key, granted, "" if granted else "capacity"))

    def media_started(self, count: int | None = None) -> list[CallAction]:
        """The relay bound the call's streams (``count``, default all it asked for):
        ports 40000+4i (the caller's leg) and 40002+4i (the destination's)."""
        media = self.call.media
        assert media is not None
        count = media.unstarted if count is None else count
        first = len(media.streams) - media.unstarted
        return self.feed(MediaStarted(ports=[(40000 + 4 * i, 40002 + 4 * i)
                                             for i in range(first, first + count)]))

    # -- what a test reads -----------------------------------------------------------------

    @property
    def caller_statuses(self) -> list[int]:
        return [r.status for r in self.ledger.to_caller]

    @property
    def cdr(self) -> CdrRecord:
        assert len(self.ledger.cdrs) == 1, self.ledger.cdrs
        return self.ledger.cdrs[0][0]

    @property
    def attempt_records(self) -> list[dict[str, Any]]:
        assert len(self.ledger.cdrs) == 1
        return self.ledger.cdrs[0][1]

    def in_use(self) -> int:
        return sum(self.ledger.occupied.values())
