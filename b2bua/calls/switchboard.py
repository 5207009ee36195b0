"""The switchboard: the SIP stack's application. It takes each request that is not a
retransmission, runs the policy on new ones, starts calls, hands in-dialog messages to the
call that holds their Call-ID, and keeps what calls share: capacity counts and live call
state."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any

from b2bua.aio.call_adapter import CallAdapter
from b2bua.calls.anchor import MediaAnchor, MediaTotals
from b2bua.calls.call import ALLOW, Call
from b2bua.calls.cdr import CdrWriter
from b2bua.calls.counts import CallCounts
from b2bua.calls.endpoints import Destination, Origin
from b2bua.calls.events import (
    AckReceived,
    CallerCancel,
    HangUp,
    InDialogRequest,
    Side,
    StrayResponse,
)
from b2bua.calls.records import ladder_call, ladder_caller, ladder_end
from b2bua.clock import SYSTEM_CLOCK, Clock
from b2bua.config.live import Params
from b2bua.controls.duration import call_limit
from b2bua.controls.rates import CallRate, retry_after
from b2bua.ladders import LadderStore
from b2bua.media.plane import MediaPlane
from b2bua.numbers.rules import NumberTables
from b2bua.policy import Action, Outcome, Policy, SourceKind, classify_by_address
from b2bua.registrar.bindings import BindingStore
from b2bua.registrar.phones import PhoneDirectory
from b2bua.registrar.registrar import Registrar
from b2bua.routing.dns import Plan
from b2bua.routing.gateways import GatewayDirectory, RoutingGateway
from b2bua.routing.periods import all_in_force
from b2bua.routing.resolver import VendorResolver
from b2bua.routing.select import RouteExplanation, RoutePlan, explain_route, plan_route
from b2bua.routing.weights import WeightedTurns
from b2bua.sip.badrequest import (
    answer_malformed,
    bad_extension,
    reason_for,
    status_for,
    unsupported_required,
)
from b2bua.sip.edge import DROP_HEADER, Arrival, EdgeTrust
from b2bua.sip.errors import SipParseError
from b2bua.sip.message import Request, Response, make_response
from b2bua.sip.peer import Peer
from b2bua.sip.stack import SipStack
from b2bua.sip.transaction import ServerTransaction, Timers

log = logging.getLogger("b2bua.calls")

OVERLOAD_RETRY_AFTER = 2  # seconds a caller is asked to wait while the engine is overloaded
# A cluster node answers a new call only once its note is committed (docs/cluster.md),
# but never waits longer than this for it: well inside the edge's 1.5 s INVITE timer
# and RFC 3261's 200 ms for the first provisional.
NOTE_WAIT = 0.15


class _Committed:
    """A writer marker (``DbWriter.flush``'s kind): its ``set``, run in the writer's
    thread once the writes before it are committed, hands ``callback`` to the loop."""

    __slots__ = ("callback", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self.loop = loop
        self.callback = callback

    def set(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed at a stop: nobody waits
            self.loop.call_soon_threadsafe(self.callback)


@dataclass
class CallStats:
    attempts: int = 0
    answered: int = 0
    failed: int = 0
    rejected_capacity: int = 0
    rejected_rate: int = 0  # new calls over their mapping gateway's or phone's call rate
    vendor_rate_limited: int = 0  # vendors skipped at their call rate
    rejected_unknown: int = 0
    dropped_unknown: int = 0
    loops: int = 0
    too_many_hops: int = 0
    rejected_overload: int = 0
    refused_by_lists: int = 0
    bad_requests_answered: int = 0  # 400/416/420/505 to known sources (docs/sip.md)
    bad_requests_dropped: int = 0  # malformed, from an unknown source or unanswerable
    dns_failures: int = 0  # attempts not sent: the gateway's name gave no address
    edge_probes: int = 0  # OPTIONS from a trusted edge itself (its liveness probe)


class Switchboard:
    def __init__(self, stack: SipStack, params: Params, gateways: GatewayDirectory,
                 cdrs: CdrWriter, timers: Timers, policy: Policy, phones: PhoneDirectory,
                 bindings: BindingStore, registrar: Registrar, numbers: NumberTables,
                 counts: CallCounts | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.stack = stack
        # The wall and monotonic clocks, injected so a test drives them (b2bua/clock.py).
        self.clock = clock
        self.policy = policy
        self.phones = phones
        self.bindings = bindings
        self.registrar = registrar
        self.numbers = numbers
        self.upstream_vendor: Callable[[Peer, str | None], int | None] | None = None
        # Set by the engine: a call's media anchor (from its INVITE, its origin, whether
        # the caller is behind NAT), and the relay its adapter opens sessions on; None
        # when the relay is off. Finished calls' media are added to ``media_totals``.
        self.media_factory: Callable[[Request, Origin, bool],
                                     MediaAnchor | None] | None = None
        self.media_plane: MediaPlane | None = None
        self.media_totals: MediaTotals | None = None
        # Set by the engine: True while new calls must wait (SS_OVERLOAD_LOOP_LAG).
        self.overloaded: Callable[[], bool] = lambda: False
        # Replaced by the engine with one using its --dns-server.
        self.resolver = VendorResolver()
        self._tasks: set[asyncio.Task[None]] = set()
        self.params = params
        self.gateways = gateways
        self.cdrs = cdrs
        self.timers = timers
        self.calls: dict[int, CallAdapter] = {}
        self.legs: dict[str, tuple[CallAdapter, Side]] = {}
        # New calls waiting for the cluster's admission (Call-ID: CANCELled meanwhile).
        self.admitting: dict[str, bool] = {}
        # Concurrent calls per origin (("gateway", id) or ("phone", id)), per vendor
        # ("routing"), and per phone as a callee (phones count both directions against
        # their capacity); shared by the signalling workers.
        self.counts = counts or CallCounts()
        # The proxies in front (SS_EDGE_ADDRESSES) whose X-Softswitch-Source is believed.
        self.edge = EdgeTrust()
        self.node = ""  # set by the engine from --node (docs/cluster.md)
        # Set by the engine: the calls' SIP ladders (the stack's, b2bua/ladders.py).
        self.ladders: LadderStore | None = None
        # Weighted routing's turns (b2bua/routing/weights.py), and the routing gateways
        # in force (their periods) with the directory, second and zone they are for.
        self.turns = WeightedTurns()
        self._in_force: tuple[dict[int, RoutingGateway], int, str,
                              dict[int, RoutingGateway]] | None = None
        self.stats = CallStats()
        self._numbers = itertools.count(1)

    def number_calls(self, first: int, step: int) -> None:
        """Call numbers ``first``, ``first + step``...: with several signalling workers,
        each its own residue, so a number names one call across the switch."""
        self._numbers = itertools.count(first, step)

    # -- incoming requests -----------------------------------------------------------------

    def on_request(self, request: Request, source: Peer) -> None:
        if request.to.tag is not None:
            self._in_dialog(request, source)
            return
        if request.method == "CANCEL":
            self._cancel(request, source)
            return
        self.edge.update(self.params["SS_EDGE_ADDRESSES"])
        arrival = self.edge.arrival(request, source)
        customer = arrival.customer
        if request.method == "OPTIONS" and not arrival.via_edge and self.edge.is_edge(source):
            # The edge's own probe: a node that answers is one it may send calls to.
            self.stats.edge_probes += 1
            self._answer_options(request, source)
            return
        if request.method == "INVITE" and self.upstream_vendor is not None:
            vendor_id = self.upstream_vendor(customer, request.ruri.user)
            vendor = self.gateways.routing.get(vendor_id) if vendor_id is not None else None
            if vendor is not None:
                # A vendor we registered to, calling our registered contact: the callee
                # is the number it dialled (To), routed like any other call.
                self.stack.trust(source)
                self._new_call(request, source, Origin.vendor(vendor),
                               callee=request.to.uri.user or "", customer=customer)
                return
        outcome = self.policy.admit(request, customer, self.clock.time())
        if outcome.action != Action.PASS or outcome.source is None:
            self._refuse(request, arrival, outcome)
            return
        self.stack.trust(source)
        if request.first_raw("Require") is not None and \
                self._refuse_required(request, source):
            return
        verdict = outcome.source
        method = request.method
        vouched = customer if arrival.via_edge else None
        phone = self.phones.get(verdict.account.username) if verdict.account and \
            verdict.account.kind == "phone" else None
        if method == "INVITE":
            if verdict.mapping is not None:
                self._new_call(request, source, Origin.gateway(verdict.mapping),
                               customer=customer)
            elif phone is not None:
                self._new_call(request, source, Origin.phone(phone), customer=customer)
            else:
                # Vendors do not originate calls through us: refuse, but audibly, since
                # the source is known.
                self._reply(request, source, 403)
        elif method == "REGISTER" and phone is not None:
            server = self.stack.server_transaction(request, source)
            server.respond(self.registrar.register(request, source, phone.username,
                                                   self.clock.time(), None, vouched))
        elif method == "REGISTER" and verdict.mapping is not None and verdict.account \
                and verdict.account.kind == "gateway":
            # A password-mode trunk registering (VOS3000's dynamic mapping gateway): its
            # address then identifies its calls (docs/registration.md).
            server = self.stack.server_transaction(request, source)
            server.respond(self.registrar.register(request, source, verdict.account.username,
                                                   self.clock.time(), verdict.mapping.id, vouched))
        elif method == "OPTIONS":
            self._answer_options(request, source)
        elif method in ("BYE", "INFO", "UPDATE", "PRACK"):
            self._reply(request, source, 481)
        else:
            server = self.stack.server_transaction(request, source)
            response = make_response(request, 405)
            response.add("Allow", ALLOW)
            server.respond(response)

    def _answer_options(self, request: Request, source: Peer) -> None:
        server = self.stack.server_transaction(request, source)
        response = make_response(request, 200, to_tag=None)
        response.add("Allow", ALLOW)
        server.respond(response)

    def on_malformed(self, data: bytes, source: Peer, error: SipParseError) -> None:
        """A request the stack could not take: answered (400, 416, 505) when it comes
        from a source the policy knows, dropped otherwise, so a scanner's junk gets
        nothing while a customer's broken PBX learns what is wrong."""
        answer = answer_malformed(data, error) if self._known_source(source) else None
        if answer is None:
            self.stats.bad_requests_dropped += 1
            return
        request, response = answer
        self.stats.bad_requests_answered += 1
        log.info("bad request from %s answered %d: %s", source, response.status, error)
        try:
            self.stack.mark_via(request, source)
            self.stack.respond_stateless(request, source, response)
        except SipParseError:  # its Via cannot be read: back where it came from
            self.stack.send(response.to_bytes(), source)

    def _known_source(self, source: Peer) -> bool:
        """A configured gateway's address, or a registered phone's binding."""
        if classify_by_address(source, self.gateways).kind != SourceKind.UNKNOWN:
            return True
        return self.bindings.find_by_source(source, self.clock.time()) is not None

    def _refuse_required(self, request: Request, source: Peer) -> bool:
        """420 for a Require naming an extension we do not implement (RFC 3261 8.2.2.3)."""
        if request.method in ("ACK", "CANCEL"):
            return False
        tags = unsupported_required(request)
        if not tags:
            return False
        self.stats.bad_requests_answered += 1
        self.stack.respond_stateless(request, source, bad_extension(request, tags))
        return True

    def _reply(self, request: Request, source: Peer, status: int) -> None:
        self.stack.server_transaction(request, source).respond(make_response(request, status))

    def _refuse(self, request: Request, arrival: Arrival, outcome: Outcome) -> None:
        """Carry out a policy verdict other than pass."""
        source = arrival.peer
        if outcome.action == Action.DROP:
            self.stats.dropped_unknown += 1
            if arrival.via_edge:
                # The edge must not time out and answer 408 itself (or try the next
                # node): it is told, and swallows this answer (b2bua/sip/edge.py).
                silence = make_response(request, 403)
                silence.add(DROP_HEADER, "silent")
                self.stack.respond_stateless(request, source, silence)
                return
            # A TCP connection that never carried an authorised request is closed
            # without a word, so a scanner learns nothing from it either.
            self.stack.close_untrusted(source)
            return
        if outcome.action == Action.REJECT:
            self.stats.rejected_unknown += 1
        response = make_response(request, outcome.status)
        for name, value in outcome.headers:
            response.add(name, value)
        # Statelessly: a refusal keeps no transaction (no memory, no retransmissions to
        # a scanner); a retransmitted request is simply refused again.
        self.stack.respond_stateless(request, source, response)

    def _unknown(self, request: Request, source: Peer) -> None:
        """A stray request that matches no dialog: 481 for known sources, else policy."""
        self.edge.update(self.params["SS_EDGE_ADDRESSES"])
        arrival = self.edge.arrival(request, source)
        if classify_by_address(arrival.customer, self.gateways).kind == SourceKind.UNKNOWN:
            self._refuse(request, arrival, self.policy.unknown(request, arrival.customer,
                                                               self.clock.time()))
        else:
            self._reply(request, source, 481)

    def _in_dialog(self, request: Request, source: Peer) -> None:
        leg = self.legs.get(request.call_id)
        if leg is None:
            self._unknown(request, source)
            return
        adapter, side = leg
        if request.method == "CANCEL" or \
                request.to.tag != adapter.call.local_tag(request.call_id, side):
            # Another dialog's tags (RFC 3261 12.2.2), or a CANCEL inside a dialog.
            self._reply(request, source, 481)
            return
        adapter.feed(InDialogRequest(side, request,
                                     self.stack.server_transaction(request, source)))

    def _cancel(self, request: Request, source: Peer) -> None:
        assert self.stack.layer is not None
        invite_txn = self.stack.layer.find_invite_server(request)
        if invite_txn is None:
            self._unknown(request, source)
            return
        # 200 while the INVITE's transaction exists, even when its final response went
        # out already (RFC 3261 9.2): then the CANCEL changes nothing.
        self._reply(request, source, 200)
        leg = self.legs.get(request.call_id)
        if leg is not None:
            leg[0].feed(CallerCancel())
        elif request.call_id in self.admitting:
            self.admitting[request.call_id] = True  # answered 487 once admitted

    def on_ack(self, request: Request, source: Peer) -> None:
        leg = self.legs.get(request.call_id)
        if leg is not None:
            leg[0].feed(AckReceived(leg[1], request))

    def on_stray_response(self, response: Response, source: Peer) -> None:
        leg = self.legs.get(response.call_id)
        if leg is not None and leg[1] is Side.CALLEE:
            leg[0].feed(StrayResponse(response.call_id, response))

    # -- new calls -------------------------------------------------------------------------

    def _new_call(self, invite: Request, source: Peer, origin: Origin,
                  callee: str | None = None, customer: Peer | None = None) -> None:
        self.stats.attempts += 1
        try:
            max_forwards = invite.max_forwards
            # A bad Request-URI, From or To is refused here, before the call is counted.
            invite.ruri  # noqa: B018
            invite.from_  # noqa: B018
            invite.to  # noqa: B018
        except SipParseError as exc:
            self.stack.respond_stateless(invite, source, make_response(
                invite, status_for(exc), reason_for(exc)))
            self.stats.bad_requests_answered += 1
            self.stats.failed += 1
            return
        if max_forwards is not None and max_forwards <= 0:
            self.stats.too_many_hops += 1
            self._reply(invite, source, 483)
            return
        if self._is_loop(invite) or invite.call_id in self.legs or \
                invite.call_id in self.admitting:
            self.stats.loops += 1
            self._reply(invite, source, 482)
            return
        if self.overloaded():
            # Stateless and early: an overloaded engine spends nothing more on the call.
            self.stats.rejected_overload += 1
            refusal = make_response(invite, 503)
            refusal.add("Retry-After", str(OVERLOAD_RETRY_AFTER))
            self.stack.respond_stateless(invite, source, refusal)
            return
        rate = origin.call_rate
        if self.counts.shared is not None and (origin.capacity is not None or
                                               rate is not None):
            # A cluster node: the capacity and rate are the cluster's, asked of Redis
            # (docs/cluster.md); the INVITE's transaction absorbs retransmissions meanwhile.
            server = self.stack.server_transaction(invite, source)
            self.admitting[invite.call_id] = False
            self.run(self._admit_across(invite, source, origin, server, callee, customer))
            return
        if rate is not None:
            wait = self.counts.pace(origin.key, rate.rate, rate.burst, self.clock.monotonic())
            if wait > 0:
                self.stack.server_transaction(invite, source).respond(
                    self._over_rate(invite, origin, wait))
                return
        if not self.counts.admit(origin.key, origin.capacity):  # counted from here
            self.stats.rejected_capacity += 1
            self._reply(invite, source, 503)
            return
        self._start_call(invite, source, origin, self.stack.server_transaction(invite, source),
                         callee, customer)

    async def _admit_across(self, invite: Request, source: Peer, origin: Origin,
                            server: ServerTransaction, callee: str | None,
                            customer: Peer | None) -> None:
        rate = origin.call_rate
        if rate is not None:
            wait = await self.counts.pace_shared(origin.key, rate.rate, rate.burst,
                                                 self.clock.monotonic())
            if wait > 0:
                cancelled = self.admitting.pop(invite.call_id, False)
                server.respond(make_response(invite, 487) if cancelled
                               else self._over_rate(invite, origin, wait))
                return
        admitted = await self.counts.admit_shared(origin.key, origin.capacity)
        cancelled = self.admitting.pop(invite.call_id, False)
        if not admitted:
            self.stats.rejected_capacity += 1
            server.respond(make_response(invite, 487 if cancelled else 503))
            return
        if cancelled:
            self.counts.add(origin.key, -1)
            server.respond(make_response(invite, 487))
            return
        self._start_call(invite, source, origin, server, callee, customer)

    def _over_rate(self, invite: Request, origin: Origin, wait: float) -> Response:
        """The answer to a call over its origin's call rate: the configured code (503 by
        default) with a Retry-After of when the next call would pass."""
        self.stats.rejected_rate += 1
        refusal = make_response(invite, origin.call_rate_code)
        refusal.add("Retry-After", str(retry_after(wait)))
        return refusal

    def _start_call(self, invite: Request, source: Peer, origin: Origin,
                    server: ServerTransaction, callee: str | None,
                    customer: Peer | None) -> None:
        call = Call(self, next(self._numbers), invite, source, server, origin, self.clock.time(),
                    callee, customer)
        adapter = CallAdapter(call, self)
        self.calls[call.no] = adapter
        self.legs[invite.call_id] = (adapter, Side.CALLER)
        if self.ladders is not None:
            adapter.ladder = self.ladders.open(
                call.no, call.cdr_uuid, invite.call_id, ladder_call(call),
                ladder_caller(call), lambda: (invite.to_bytes(), source, call.start_at))
        adapter.start()

    def _is_loop(self, invite: Request) -> bool:
        """Our own INVITE coming back: a Via of ours whose branch is a live attempt."""
        layer = self.stack.layer
        assert layer is not None
        if len(invite.get_all("Via")) < 2:
            return False
        sent_by = self.stack.sent_by
        return any(
            f"{via.host}:{via.port}" == sent_by and (via.branch or "", "INVITE") in layer.clients
            for via in invite.vias[1:]
        )

    # -- what a call asks (b2bua.calls.context.CallContext) ----------------------------

    @property
    def advertised_host(self) -> str:
        return self.stack.advertised_host

    @property
    def sent_by(self) -> str:
        return self.stack.sent_by

    def contact(self, transport: str) -> str:
        return self.stack.contact(transport)

    def new_call_id(self) -> str:
        return self.stack.new_call_id()

    def plan_route(self, callee: str, now: float) -> RoutePlan:
        counts = self.counts
        return plan_route(callee, self.routing_in_force(now).values(),
                          lambda gw_id: counts[("routing", gw_id)],
                          lambda gw_id: counts[("routing_total", gw_id)],
                          lambda gw_id: self._suspended_gateway(gw_id, now), self.turns)

    def explain_route(self, callee: str, now: float) -> RouteExplanation:
        """``plan_route`` with every gateway's verdict, from the same counts and holds
        (the routing dry run, ``calls/dryrun.py``); the weighted turns are looked at, not
        taken."""
        counts = self.counts
        return explain_route(callee, self.routing_in_force(now).values(),
                             lambda gw_id: counts[("routing", gw_id)],
                             lambda gw_id: counts[("routing_total", gw_id)],
                             self._held_until, now, self.turns)

    def routing_in_force(self, now: float) -> dict[int, RoutingGateway]:
        """The routing gateways as their periods in force now make them (docs/
        carrier-controls.md); the configured ones when none has periods. Worked out once
        a second (periods are in seconds) and after every reload."""
        routing = self.gateways.routing
        second = int(now)
        cached = self._in_force
        if cached is not None and cached[0] is routing and cached[1] == second:
            return cached[3]  # the zone is read again each second: live within one
        zone_name = self.params["SS_ROUTING_TIME_ZONE"]
        if cached is None or cached[0] is not routing:
            self.turns.reset()  # reloaded: the weights may have changed
        if any(gw.periods for gw in routing.values()):
            current = {gw.id: gw for gw in all_in_force(routing.values(), now, zone_name)}
        else:
            current = routing
        self._in_force = (routing, second, zone_name, current)
        return current

    def peek_vendor(self, gw: RoutingGateway) -> Plan:
        """A gateway's targets as the DNS cache has them, for a look only."""
        return self.resolver.peek(gw)

    def vendor_plan(self, gw: RoutingGateway) -> Plan:
        """A gateway's targets from the DNS cache (incomplete when it is cold)."""
        return self.resolver.plan(gw)

    async def resolve_vendor(self, gw: RoutingGateway) -> Plan:
        return await self.resolver.resolve(gw)

    def gateway_usable(self, gw: RoutingGateway, now: float) -> bool:
        """Still enabled (after a reload), not full, not taken out by a Retry-After (with
        the period in force now)."""
        current = self.routing_in_force(now).get(gw.id)
        if current is None or not current.enabled:
            return False
        if current.capacity is not None and self.counts[("routing", gw.id)] >= current.capacity:
            return False
        return not self._suspended_gateway(gw.id, now)

    def reservation(self, hop: Destination | RoutingGateway
                    ) -> tuple[tuple[str, int], int | None, CallRate | None] | None:
        """On a cluster node, a vendor's or phone's capacity is the cluster's: a place is
        taken in Redis before the leg is dialled (docs/cluster.md). A vendor with a call
        rate is asked for a pass first, on any switch (docs/carrier-controls.md)."""
        shared = self.counts.shared is not None
        if isinstance(hop, RoutingGateway):
            current = self.routing_in_force(self.clock.time()).get(hop.id) or hop
            capacity = current.capacity if shared else None
            if capacity is None and current.call_rate is None:
                return None
            return ("routing", hop.id), capacity, current.call_rate
        if not shared:
            return None
        if hop.binding is not None:
            phone = self.phones.get(hop.binding.username)
            if phone is not None and phone.capacity is not None:
                return ("phone", phone.id), phone.capacity, None
        return None

    def duration_limit(self, origin: Origin) -> int:
        return call_limit(origin.max_duration, self.params["SS_MAX_CALL_DURATION"],
                          random.randint)

    def _suspended_gateway(self, gw_id: int, now: float) -> bool:
        return self._held_until(gw_id) > now

    def _held_until(self, gw_id: int) -> float:
        """The end of a vendor's Retry-After hold (0: none ever), across the workers."""
        return self.counts.held_until(("retry_ms", gw_id))

    def gateway_status(self) -> list[dict[str, Any]]:
        now = self.clock.time()
        return [
            {
                "id": gw.id,
                "name": gw.name,
                "enabled": gw.enabled,
                "current_calls": self.counts[("routing", gw.id)],
                "total_calls": self.counts[("routing_total", gw.id)],
                "retry_after_until": until if (until := self.counts.held_until(
                    ("retry_ms", gw.id))) > now else None,
            }
            for gw in self.gateways.routing.values()
        ]

    def origin_media_check(self, origin: Origin) -> str:
        """The ``media_check`` of the gateway a call came from ("none" for phones)."""
        if origin.kind == "gateway":
            gw = self.gateways.mapping.get(origin.id)
            return gw.media_check if gw is not None else "none"
        if origin.kind == "vendor":
            vendor = self.gateways.routing.get(origin.id)
            return vendor.media_check if vendor is not None else "none"
        return "none"

    def new_media(self, invite: Request, origin: Origin, caller_nat: bool
                  ) -> MediaAnchor | None:
        factory = self.media_factory
        return factory(invite, origin, caller_nat) if factory is not None else None

    def run(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a call's coroutine (e.g. binding relay ports), keeping a reference."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def phone_destination(self, callee: str, now: float
                          ) -> tuple[Destination | None, int, str] | None:
        """None when the callee is no phone; else its binding, or why it cannot be reached."""
        phone = self.phones.get(callee)
        if phone is None:
            return None
        # A gateway's bindings are never a phone's (a username of both predates the
        # API's refusal of such a pair).
        bindings = [b for b in self.bindings.of(callee, now)
                    if b.mapping_gateway_id is None]
        if not bindings:
            return None, 480, "phone not registered"
        if phone.capacity is not None and self.counts[("phone", phone.id)] >= phone.capacity:
            return None, 486, "phone at capacity"
        return Destination.phone(bindings[0], callee, self.stack.advertised_host), 0, ""

    def leg_started(self, destination: Destination, reserved: bool = False) -> None:
        """A leg counts from now; ``reserved``: its place was taken by ``reserve``."""
        if destination.gateway is not None:
            if not reserved:
                self.counts.add(("routing", destination.gateway.id), 1)
            self.counts.add(("routing_total", destination.gateway.id), 1)
        elif destination.binding is not None and not reserved:
            phone = self.phones.get(destination.binding.username)
            if phone is not None:
                self.counts.add(("phone", phone.id), 1)

    def pace_vendor(self, key: tuple[str, int], rate: CallRate) -> bool:
        """One more call to a vendor within its call rate, on this node (exact across
        its signalling workers)."""
        if self.counts.pace(key, rate.rate, rate.burst, self.clock.monotonic()) > 0:
            self.stats.vendor_rate_limited += 1
            return False
        return True

    async def reserve(self, key: tuple[str, int], capacity: int | None,
                      rate: CallRate | None = None) -> str:
        """A cluster node's leg: its vendor's call rate, then a place within the
        capacity, both the cluster's; "" when the leg may go, else "rate" or
        "capacity"."""
        if rate is not None:
            wait = await self.counts.pace_shared(key, rate.rate, rate.burst, self.clock.monotonic())
            if wait > 0:
                self.stats.vendor_rate_limited += 1
                return "rate"
        if capacity is not None and not await self.counts.admit_shared(key, capacity):
            return "capacity"
        return ""

    def unreserve(self, key: tuple[str, int]) -> None:
        self.counts.add(key, -1)

    def leg_ended(self, destination: Destination) -> None:
        if destination.gateway is not None:
            self.counts.add(("routing", destination.gateway.id), -1)
        elif destination.binding is not None:
            phone = self.phones.get(destination.binding.username)
            if phone is not None:
                self.counts.add(("phone", phone.id), -1)

    def when_noted(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the event loop once what the writer holds now is
        committed, or after ``NOTE_WAIT`` at most (a database away must not stop calls)."""
        loop = asyncio.get_running_loop()
        done = False

        def once() -> None:
            nonlocal done
            if not done:
                done = True
                late.cancel()
                callback()

        late = loop.call_later(NOTE_WAIT, once)
        self.cdrs.writer.submit("", (_Committed(loop, once),))

    def call_ended(self, adapter: CallAdapter) -> None:
        call = adapter.call
        if self.calls.pop(call.no, None) is None:
            return
        self.legs.pop(call.invite.call_id, None)
        self.counts.add(call.origin.key, -1)
        for attempt in call.attempts:
            if attempt.dialog is not None:
                self.legs.pop(attempt.dialog.call_id, None)
        if call.answer_at is not None:
            self.stats.answered += 1
        else:
            self.stats.failed += 1
        if adapter.ladder is not None and self.ladders is not None:
            self.ladders.close(adapter.ladder, call.answer_at is not None,
                               lambda: ladder_end(call), self.clock.time())
            adapter.ladder = None

    # -- operations ------------------------------------------------------------------------

    def hang_up_all(self, why: str) -> None:
        for adapter in list(self.calls.values()):
            adapter.feed(HangUp(why))

    def hang_up(self, no: int, why: str) -> bool:
        """End call ``no`` from our side (BYE to both legs, or the caller's final
        response before the answer); False when this switchboard has no such call."""
        adapter = self.calls.get(no)
        if adapter is None:
            return False
        adapter.feed(HangUp(why))
        return True

    def active_calls(self) -> list[dict[str, Any]]:
        return [adapter.snapshot() for adapter in self.calls.values()]

    def stats_snapshot(self) -> dict[str, Any]:
        return {
            **asdict(self.stats),
            "active": len(self.calls),
            "legs": len(self.legs),
            "sip": asdict(self.stack.stats),
            "transport": asdict(self.stack.transport_stats),
            "dns": self.resolver.snapshot(),
        }

