"""One bridged call, as a state machine: events and ``now`` in, actions out.

The caller's leg (we are its UAS) and the outbound attempts are separate dialogs with
their own Call-IDs, tags and CSeqs. The core decides what happens between them: trying
destinations in order under the switching rules (``failover``), relaying provisional
and final responses, ACK, BYE, CANCEL, re-INVITE and other in-dialog requests, keeping
both legs alive, and assembling the CDR with its attempts. It sends, waits and writes
nothing itself: each step returns the actions (``actions.py``) that the asyncio adapter
(``b2bua/aio/call_adapter.py``) carries out, and the adapter feeds back what comes of them as events
(``events.py``). A unit test drives it the same way with a fake clock
(``tests/unit/test_call_core.py``).

Its questions to the switch (routing plans, gateway state, a phone's binding,
parameters) go through :class:`~b2bua.calls.context.CallContext`. SDP crosses the call's
media anchor (``anchor.MediaAnchor``, pure too): what each relay session must be set to
comes out as ``UpdateMedia`` actions, and the relay's reports come back as events.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from b2bua.calls import failover
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
from b2bua.calls.anchor import MediaAnchor, StreamUpdate, relay_wanted
from b2bua.calls.attempt import ALLOW, Attempt
from b2bua.calls.attempt_state import AttemptState
from b2bua.calls.call_state import FINAL_SENT, CallState, CallStep, next_call_state
from b2bua.calls.caller_leg import caller_response
from b2bua.calls.cdr import CdrRecord
from b2bua.calls.context import CallContext
from b2bua.calls.dialling import (
    Hop,
    Refusal,
    all_failed,
    call_route,
    map_vendor_failure,
    outbound_invite,
    retry_after,
    vendor_destination,
)
from b2bua.calls.endpoints import Destination, Origin
from b2bua.calls.events import (
    AckReceived,
    CallerCancel,
    CallEvent,
    HangUp,
    InDialogRequest,
    MediaGrown,
    MediaReport,
    MediaStarted,
    NoAck,
    NoReply,
    Reply,
    Reserved,
    RtpStarted,
    Side,
    StrayResponse,
    TimerFired,
    VendorResolved,
)
from b2bua.calls.failover import Next, SwitchRules, Timer
from b2bua.calls.liveness import (
    LegTimer,
    RefreshWait,
    leg_timer,
    media_checks,
    refresh_request,
)
from b2bua.calls.records import call_record, call_snapshot
from b2bua.calls.relay import (
    RELAYED_METHODS,
    PendingReinvite,
    RelayWait,
    relayed_request,
    relayed_response,
)
from b2bua.routing.dns import Plan, Target
from b2bua.routing.gateways import RoutingGateway
from b2bua.sip.dialog import Dialog, origin_host
from b2bua.sip.edge import outbound_proxy
from b2bua.sip.message import Request, Response, default_reason, make_response
from b2bua.sip.peer import Peer
from b2bua.sip.transaction import TIMER_64T1, ServerTransaction

log = logging.getLogger("b2bua.call")

__all__ = ["ALLOW", "Call", "CallState", "Side", "map_vendor_failure"]

MEDIA_CHECK_EVERY = 1.0  # seconds between two looks at a relayed call's RTP
# A refresh re-INVITE that falls due while another INVITE transaction is in progress in
# its dialog is tried again this much later (RFC 3261 14.1 asks 2.1 to 4 s of an owner).
GLARE_RETRY = 2.5


def _has_sdp(response: Response) -> bool:
    return bool(response.body) and "sdp" in (response.get("Content-Type") or "sdp").lower()


def _other(side: Side) -> Side:
    return Side.CALLEE if side is Side.CALLER else Side.CALLER


class Call:
    """The core of one call. Each ``handle``/``begin`` returns the actions to carry out,
    in order."""

    def __init__(self, ctx: CallContext, call_no: int, invite: Request, source: Peer,
                 server: ServerTransaction, origin: Origin, now: float,
                 callee: str | None = None, customer: Peer | None = None) -> None:
        self.ctx = ctx
        self.no = call_no
        self.invite = invite
        self.source = source  # where the INVITE came from: the caller, or an edge
        # Whose call it is (the CDR's source): behind a trusted edge, the address the
        # edge received it from (b2bua/sip/edge.py); else the source.
        self.customer = customer or source
        self.server = server
        self.origin = origin
        # Read once: the relay decision and the media's NAT flag ask again.
        self.caller_nat = self.behind_nat(invite, source)
        self.inbound = Dialog.as_uas(
            invite, source, ctx.sent_by, ctx.contact(source.transport),
            send_to_source=self._pin_to_source(invite, source, self.caller_nat),
        )
        self.caller = invite.from_.uri.user or ""  # as received
        self.callee = callee if callee is not None else invite.ruri.user or ""
        # The platform numbers: after the mapping side's dial plans and transform.
        self.caller_routed, self.callee_routed = origin.numbers.rewrite(
            self.caller, self.callee, ctx.numbers.transforms)
        self.state = CallState.ROUTING
        self.ended = False  # the state is ENDED (read at every event: an attribute)
        self.callee_phone: str | None = None
        self.route: list[Hop] = []
        self._next = 0  # index in route of the next destination to try
        self._hops = 0  # destinations tried: what SS_GATEWAY_SWITCH_LIMIT counts
        # The current gateway's DNS targets not tried yet (RFC 3263: a timeout or 503
        # from one moves to the next before the gateway counts as failed).
        self._targets: list[Target] = []
        # A cluster's shared capacity (docs/cluster.md): the hop waiting for ``Reserved``,
        # and the place taken for the next leg and not used by one yet.
        self._reserving: Hop | None = None
        self._reserving_place = False  # whether that Reserve asked for a place
        self._reserved: tuple[str, int] | None = None
        self.attempts: list[Attempt] = []
        self.attempt: Attempt | None = None  # the current one; after answer, the answered one
        self.committed = False
        self.failure_codes: list[int] = []
        self.start_at = now
        self.end_at: float | None = None
        self.cdr_uuid = str(uuid.uuid4())
        self.ringing_at: float | None = None
        self.answer_at: float | None = None
        self.final_code = 0
        self.final_reason = ""
        self.caller_code = 0  # what the caller was sent (a failure-code map may change it)
        # The longest talk time (s, 0: none), drawn at the start (docs/carrier-controls.md).
        self.max_duration = ctx.duration_limit(origin)
        self.hangup_by = ""
        self.termination = ""
        self._late_offer = not invite.body
        self._reinvite: PendingReinvite | None = None
        # Legs with a refresh re-INVITE of ours in progress (RFC 3261 14.1: no second
        # INVITE transaction in a dialog meanwhile).
        self._refreshing: set[Side] = set()
        # A hang-up that waits for the caller's ACK of our 200 (RFC 3261 15: no BYE to
        # the caller before it): who hung up, and why.
        self._hangup_after_ack: tuple[str, str] | None = None
        self.media: MediaAnchor | None = None
        self._to_caller_last = b""  # the last SDP each leg got from us (liveness re-INVITE)
        self._to_callee_last = invite.body
        self._sdp_sent: dict[Side, bytes] = {}
        self.origin_media_check = ctx.origin_media_check(origin)
        self._media_checks: dict[str, str] = {}
        # The timers set and not yet fired or cancelled, by name: all cancelled at the end.
        self.timers: set[str] = set()
        # Requests sent and awaiting their answer, by token; tokens count from 1.
        self._waiting: dict[int, Attempt | RelayWait | RefreshWait] = {}
        self._tokens = 0
        self._out: list[CallAction] = []
        self._leg_timers: dict[Side, LegTimer] = {}  # each leg's refresh, once answered
        # Requests waiting for more relay ports, with how many streams they asked.
        self._growing: dict[int, tuple[RelayWait, int]] = {}

    @staticmethod
    def behind_nat(invite: Request, source: Peer) -> bool:
        """The caller's Contact names another host than the one the INVITE was sent
        from: the source address, or through proxies the bottom Via (the caller's own,
        with the ``received`` its first proxy added). Hosts are compared parsed: a
        Contact at 10.0.0.12 is not at 10.0.0.1. No usable Contact counts as NAT (requests
        then go back to the source)."""
        contact = invite.contact_uri
        return contact is None or contact.host.strip("[]") != origin_host(invite, source)

    @classmethod
    def _pin_to_source(cls, invite: Request, source: Peer, nat: bool | None = None) -> bool:
        """Send in-dialog requests back to the source address over TCP and when the
        caller is behind NAT (``nat``, when already known); a record-routed caller is
        reached through its route set, whose proxies handle its NAT."""
        if source.reliable:
            return True
        if invite.first_raw("Record-Route") is not None:
            return False
        return cls.behind_nat(invite, source) if nat is None else nat

    def local_tag(self, call_id: str, side: Side) -> str | None:
        """Our tag in the dialog of ``call_id`` (the caller's, or an attempt's)."""
        if side is Side.CALLER:
            return self.inbound.local_tag
        for attempt in reversed(self.attempts):
            dialog = attempt.dialog
            if dialog is not None and dialog.call_id == call_id:
                return dialog.local_tag
        return None

    @property
    def outbound(self) -> Dialog | None:
        return self.attempt.dialog if self.attempt is not None else None

    @property
    def gateway(self) -> RoutingGateway | None:
        return self.attempt.destination.gateway if self.attempt is not None else None

    # -- driving the core ------------------------------------------------------------------

    def begin(self, now: float) -> list[CallAction]:
        """The new call: its crash-recovery note, 100 Trying, then routing."""
        self._out.append(NoteStarted(self.cdr_record(now, "", "")))
        self._out.append(Respond(self.server, make_response(self.invite, 100)))
        self._route_and_dial(now)
        out, self._out = self._out, []
        return out

    def handle(self, event: CallEvent, now: float) -> list[CallAction]:
        _HANDLERS[type(event)](self, event, now)
        out, self._out = self._out, []
        return out

    def _step(self, step: CallStep) -> None:
        self.state = next_call_state(self.state, step)

    def _token(self) -> int:
        self._tokens += 1
        return self._tokens

    def _set_timer(self, name: str, delay: float) -> None:
        self.timers.add(name)
        self._out.append(SetTimer(name, delay))

    def _cancel_timer(self, name: str) -> None:
        if name in self.timers:
            self.timers.discard(name)
            self._out.append(CancelTimer(name))

    def _transact(self, request: Request, peer: Peer, wait: Attempt | RelayWait |
                  RefreshWait | None, timeout: float | None = None,
                  resend: list[float] | None = None) -> int:
        token = 0
        if wait is not None:
            token = self._token()
            self._waiting[token] = wait
        self._out.append(Transact(token, request, peer, timeout, resend))
        return token

    # -- routing and attempts --------------------------------------------------------------

    def _route_and_dial(self, now: float) -> None:
        route = call_route(self.ctx, self.origin, self.caller_routed, self.callee_routed, now)
        if isinstance(route, Refusal):
            self.callee_phone = route.callee_phone
            if route.by_lists:
                self.ctx.stats.refused_by_lists += 1
            self._fail_caller(route.code, route.reason, "system", route.why, now)
            return
        self.route, self.callee_phone = route
        self._dial_first(now)

    def _dial_first(self, now: float) -> None:
        """Anchor the media first when the relay is wanted, then try the first hop."""
        first = self._destination(self.route[0])
        wanted = relay_wanted(
            str(self.ctx.params["SS_MEDIAPROXYMODE"]),
            [self.origin.media_relay, first.media_relay],
            nat=self.caller_nat or first.nat,
            encrypted=self.origin.rtp_encryption or first.encrypted,
        )
        if not wanted or (not self.invite.body and not first.encrypted):
            if wanted:
                log.info("call %d: no SDP offer from the caller; media not relayed", self.no)
            self._next_attempt(now)
            return
        media = self.ctx.new_media(self.invite, self.origin, self.caller_nat)
        if media is None:
            self._next_attempt(now)
            return
        self.media = media
        self._out.append(StartMedia(media.setup, media.unstarted))

    def _on_media_started(self, event: MediaStarted, now: float) -> None:
        media = self.media
        if event.error is not None:  # no free port pair, or a bind error
            log.warning("call %d: media relay unavailable (%s)", self.no, event.error)
            self.media = None
            if media is not None:
                self._out.append(StopMedia())
            if not self.ended:
                self._fail_caller(503, "Service Unavailable", "system", "no media port free",
                                  now)
            return
        if self.ended:
            if media is not None:  # the call ended while its ports were being bound
                self._out.append(StopMedia())
            return
        if media is not None:
            self._update_media(media.started(event.ports))
        self._next_attempt(now)

    def _update_media(self, updates: list[StreamUpdate]) -> None:
        # After the end the relay's sessions are closing: an answer relayed late (a
        # re-INVITE's 18x after the hang-up) changes nothing there.
        if updates and not self.ended:
            self._out.append(UpdateMedia(updates))

    def _on_rtp_started(self, event: RtpStarted, now: float) -> None:
        """First RTP from the destination side (reported by the relay): under the
        ``rtp`` switching rule the call is committed. No action follows."""
        attempt = self.attempt
        if attempt is not None and attempt.open and failover.commits_on_rtp(attempt.rules):
            self.committed = True

    def _offer_body(self, destination: Destination) -> bytes:
        """The caller's SDP as the destination receives it."""
        if self.media is not None:
            self._update_media(self.media.set_destination(destination.nat,
                                                          destination.encrypted))
        return self._to_callee(self.invite.body)

    def _to_caller(self, body: bytes) -> bytes:
        out = body
        if self.media is not None and body:
            out, updates = self.media.from_callee(body)
            self._update_media(updates)
        if out:
            self._to_caller_last = out
            self._sdp_sent[Side.CALLER] = out
        return out

    def _to_callee(self, body: bytes) -> bytes:
        out = body
        if self.media is not None and body:
            out, updates = self.media.from_caller(body)
            self._update_media(updates)
        if out:
            self._to_callee_last = out
            self._sdp_sent[Side.CALLEE] = out
        return out

    def _destination(self, hop: Destination | RoutingGateway,
                     target: Target | None = None) -> Destination:
        """A vendor's numbers are computed for each attempt, from the platform numbers."""
        if isinstance(hop, Destination):
            return hop
        return vendor_destination(hop, self.caller_routed, self.callee_routed,
                                  self.ctx.numbers.transforms, target,
                                  outbound_proxy(self.ctx.params["SS_OUTBOUND_PROXY"]))

    def _next_attempt(self, now: float) -> None:
        if self.ended:
            return
        if self._reserved is not None:
            self._give_back()
        self._targets = []
        limit = self.ctx.params["SS_GATEWAY_SWITCH_LIMIT"]
        while self._next < len(self.route) and not (limit and self._hops >= limit):
            hop = self.route[self._next]
            self._next += 1
            # A gateway may have filled up or been taken out of routing since the plan.
            if isinstance(hop, RoutingGateway) and not self.ctx.gateway_usable(hop, now):
                continue
            wanted = self.ctx.reservation(hop)
            if wanted is not None:
                reserve = Reserve(*wanted)
                self._reserving = hop
                self._reserving_place = reserve.capacity is not None
                self._out.append(reserve)
                return
            if self._take(hop, now):
                return
        self._route_spent(now)

    def _route_spent(self, now: float) -> None:
        code, hangup_by, why = all_failed(self.attempts, self.failure_codes)
        self._fail_caller(code, None, hangup_by, why, now)

    def _take(self, hop: Hop, now: float) -> bool:
        """Dial ``hop`` (after its name is resolved, when the DNS cache is cold); False
        when nothing was sent and the route goes on."""
        self._hops += 1
        if isinstance(hop, Destination):
            self._start_attempt(hop, now)
            return True
        plan = self.ctx.vendor_plan(hop)
        if not plan.complete:
            # A cold DNS cache: resolve first, then this gateway's INVITE.
            self._out.append(Resolve(hop))
            return True
        return self._dial_gateway(hop, plan, now)

    def _on_reserved(self, event: Reserved, now: float) -> None:
        hop, self._reserving = self._reserving, None
        if event.granted and self._reserving_place:
            self._reserved = event.key
        if self.ended or hop is None:
            self._give_back()
            return
        if not event.granted:
            if isinstance(hop, Destination):  # a phone: its only hop
                self._fail_caller(486, None, "system", "phone at capacity", now)
                return
            if event.refused_by == "rate":
                self._skip_gateway(hop, "rate_limited", "at its call rate", now)
            self._next_attempt(now)  # full across the cluster: as if full here
            return
        if not self._take(hop, now):
            self._next_attempt(now)

    def _give_back(self) -> None:
        """The place reserved for a leg that was never sent (a DNS failure, the end)."""
        if self._reserved is not None:
            self._out.append(Unreserve(self._reserved))
            self._reserved = None

    def _on_resolved(self, event: VendorResolved, now: float) -> None:
        if self.ended:
            return
        if not self._dial_gateway(event.gateway, event.plan, now):
            self._next_attempt(now)

    def _skip_gateway(self, gw: RoutingGateway, outcome: str, note: str, now: float) -> None:
        """A gateway of the route not dialled (e.g. at its call rate): an attempt in the
        CDR that says why, with no INVITE."""
        rules = SwitchRules.resolve(self.ctx.params, gw)
        attempt = Attempt(len(self.attempts) + 1, self._destination(gw), rules, now)
        attempt.note = note
        attempt.finish(outcome, now)
        self.attempts.append(attempt)
        if self.attempt is None or not self.attempt.open:
            self.attempt = attempt

    def _dial_gateway(self, gw: RoutingGateway, plan: Plan, now: float) -> bool:
        """The gateway's first target; False when its name gave no address (the attempt
        is recorded as a DNS failure and the route goes on)."""
        if not plan.targets:
            self.ctx.stats.dns_failures += 1
            log.info("call %d: routing gateway %s: %s", self.no, gw.name, plan.failure)
            rules = SwitchRules.resolve(self.ctx.params, gw)
            attempt = Attempt(len(self.attempts) + 1, self._destination(gw), rules, now)
            attempt.note = plan.failure
            attempt.finish("dns_failure", now)
            self.attempts.append(attempt)
            self.attempt = attempt
            return False
        self._targets = list(plan.targets[1:])
        self._start_attempt(self._destination(gw, plan.targets[0]), now)
        return True

    def _next_target(self, attempt: Attempt, now: float) -> bool:
        """After a timeout or 503 from one of a gateway's DNS targets: the next one, unless
        the call is committed to this one."""
        gw = attempt.destination.gateway
        if not self._targets or gw is None or self.committed:
            return False
        target = self._targets.pop(0)
        log.info("call %d: routing gateway %s: next target %s", self.no, gw.name, target)
        self._start_attempt(self._destination(gw, target), now)
        return True

    def _start_attempt(self, dest: Destination, now: float) -> None:
        ctx = self.ctx
        rules = SwitchRules.resolve(ctx.params, dest.gateway)
        attempt = Attempt(len(self.attempts) + 1, dest, rules, now, target=dest.target)
        self.attempts.append(attempt)
        self.attempt = attempt
        self._step(CallStep.DIAL)
        attempt.dialog, request, attempt.caller_sent = outbound_invite(
            ctx, dest, self.invite, self.caller_routed, self._offer_body(dest))
        attempt.callee_sent = request.ruri.user or ""
        dialog = attempt.dialog
        self._out.append(Occupy(dest, reserved=self._reserved is not None))
        self._reserved = None
        self._out.append(WatchLeg(dialog.call_id))
        token = self._transact(request, dest.peer, attempt, rules.invite_timeout,
                               ctx.params["SS_SIP_RESEND_INTERVAL"])
        attempt.sent(token)

    def _close(self, attempt: Attempt) -> None:
        """The leg no longer counts against the destination's capacity."""
        self._disarm(attempt)
        if attempt.open:
            attempt.open = False
            self._cancel_timer(attempt.release_name)
            self._out.append(Release(attempt.destination))

    def _arm(self, attempt: Attempt, timer: Timer) -> None:
        attempt.timer = timer
        self._set_timer(attempt.timer_name, attempt.rules.timers[timer])

    def _disarm(self, attempt: Attempt) -> None:
        if attempt.timer is not None:
            attempt.timer = None
            self._cancel_timer(attempt.timer_name)

    def _finish_attempt(self, attempt: Attempt, outcome: str, now: float) -> None:
        attempt.finish(outcome, now)
        self._disarm(attempt)

    def _abandon(self, attempt: Attempt) -> None:
        """Give the attempt up: CANCEL once a provisional came, else as soon as one does
        (RFC 3261 9.1). Nothing to do once the INVITE had its final response."""
        self._disarm(attempt)
        if not attempt.pending:
            return
        before = attempt.abandon()
        if before is AttemptState.PROCEEDING:
            self._out.append(CancelInvite(attempt.token, attempt.destination.peer))
        if before not in (AttemptState.CANCEL_WAIT, AttemptState.CANCELLING) and attempt.open:
            # A destination that answers neither the CANCEL nor the INVITE must not hold
            # its capacity for ever.
            self._set_timer(attempt.release_name, TIMER_64T1)

    def _ack(self, attempt: Attempt, body: bytes = b"", content_type: str | None = None
             ) -> None:
        dialog = attempt.dialog
        assert dialog is not None
        ack = dialog.create_request("ACK", body, content_type, cseq=1)
        attempt.ack_bytes = ack.to_bytes()
        self._out.append(Send(attempt.ack_bytes, dialog.next_peer()))

    def _bye_attempt(self, attempt: Attempt) -> None:
        dialog = attempt.dialog
        if dialog is None or dialog.remote_tag is None:
            return
        if attempt.ack_bytes is None and attempt.state is AttemptState.ANSWERED:
            # Every 2xx is ACKed before its BYE (RFC 3261 13.2.2.4), also a late offer's
            # whose answer from the caller never came (an ACK without a body).
            self._ack(attempt)
        attempt.hung_up()
        self._transact(dialog.create_request("BYE"), dialog.next_peer(), None)
        self._close(attempt)

    def _on_reply(self, event: Reply, now: float) -> None:
        wait = self._waiting.get(event.token)
        if wait is None:
            return
        response = event.response
        if response.status >= 200:
            del self._waiting[event.token]
        if isinstance(wait, Attempt):
            self._on_invite_response(wait, response, now)
        elif isinstance(wait, RelayWait):
            self._relay_back(wait, response)
        else:
            self._refresh_answered(wait, response, now)

    def _on_no_reply(self, event: NoReply, now: float) -> None:
        wait = self._waiting.pop(event.token, None)
        if isinstance(wait, Attempt):
            self._on_invite_timeout(wait, now)
        elif isinstance(wait, RelayWait):
            self._relay_timeout(wait)
        elif isinstance(wait, RefreshWait):
            self._refreshing.discard(wait.side)
            self._refresh_failed(wait.side, "no answer", now)

    def _on_invite_response(self, attempt: Attempt, response: Response, now: float) -> None:
        status = response.status
        dialog = attempt.dialog
        assert dialog is not None
        if status < 200:
            if attempt.provisional(status, now):
                # It waited for this first provisional.
                self._out.append(CancelInvite(attempt.token, attempt.destination.peer))
            if attempt.abandoned:
                return
            if status != 100:
                dialog.update_from_response(response)
            sdp = _has_sdp(response)
            timer = failover.timer_for(status, sdp)
            if timer is not None:
                self._arm(attempt, timer)
            if status == 100:
                return
            if failover.commits_on_provisional(attempt.rules, status, sdp):
                self.committed = True
            if self.ringing_at is None:
                self.ringing_at = now
            self._step(CallStep.PROGRESS)
            self._reply_caller(status, response.reason, response)
        elif status < 300:
            dialog.update_from_response(response)
            abandoned = attempt.abandoned
            attempt.answered(status, now)
            self._disarm(attempt)
            if abandoned or self.ended:
                # The answer raced our CANCEL, a timer or a teardown: ACK it, then hang
                # up (RFC 3261 15), so no leg stays up at the vendor.
                self._ack(attempt)
                self._bye_attempt(attempt)
                self._out.append(ForgetLeg(dialog.call_id))
                return
            self._on_answer(attempt, response, now)
        else:
            abandoned = attempt.abandoned
            attempt.failed(status, now)
            self._close(attempt)
            self._out.append(ForgetLeg(dialog.call_id))
            if abandoned or self.ended:
                return
            self.failure_codes.append(status)
            if status == 503 and self._next_target(attempt, now):
                return
            gw = attempt.destination.gateway
            if status == 503 and gw is not None:
                self._honour_retry_after(gw, response, now)
            decision = failover.on_failure(attempt.rules, status, self.committed)
            if decision == Next.END:
                code = map_vendor_failure(status)
                self._fail_caller(code, response.reason if code == status else None,
                                  "callee", f"vendor {status} {response.reason}", now)
            else:
                self._next_attempt(now)

    def _honour_retry_after(self, gw: RoutingGateway, response: Response, now: float
                            ) -> None:
        seconds = retry_after(response)
        if seconds is not None:
            log.info("routing gateway %s out of routing for %d s (Retry-After)", gw.name,
                     seconds)
            self._out.append(HoldGateway(gw, now + seconds))

    def _on_invite_timeout(self, attempt: Attempt, now: float) -> None:
        abandoned = attempt.abandoned
        attempt.timed_out(now)
        self._close(attempt)
        if attempt.dialog is not None:
            self._out.append(ForgetLeg(attempt.dialog.call_id))
        if abandoned or self.ended or self._next_target(attempt, now):
            return
        if failover.on_invite_timeout(attempt.rules) == Next.END:
            self._fail_caller(408, "Request Timeout", "system", "INVITE timeout", now)
        else:
            self._next_attempt(now)

    def _on_timer(self, event: TimerFired, now: float) -> None:
        name = event.name
        if name not in self.timers:
            return  # cancelled after it was due
        self.timers.discard(name)
        kind, _, rest = name.partition("-")
        if kind == "attempt":
            self._on_attempt_timer(self.attempts[int(rest) - 1], now)
        elif kind == "release":
            self._close(self.attempts[int(rest) - 1])
        elif kind == "refresh":
            self._refresh(Side(rest), now)
        elif kind == "media":
            self._check_media(now)
        elif kind == "limit":
            log.info("call %d: maximum duration (%d s) reached", self.no, self.max_duration)
            self._hang_up_both("system", "maximum duration", now)

    def _on_attempt_timer(self, attempt: Attempt, now: float) -> None:
        timer = attempt.timer
        attempt.timer = None
        if timer is None or attempt is not self.attempt or attempt.abandoned or self.ended:
            return
        self._finish_attempt(attempt, timer.value, now)
        self._abandon(attempt)
        if failover.on_timer(attempt.rules, self.committed) == Next.END:
            self._fail_caller(408, "Request Timeout", "system", timer.value.replace("_", " "),
                              now)
        else:
            self._next_attempt(now)

    def _on_answer(self, attempt: Attempt, response: Response, now: float) -> None:
        if not self._late_offer:
            self._ack(attempt)
        self.committed = True
        self.answer_at = now
        self._step(CallStep.ANSWER)
        dialogs = (self.inbound.to_note(),) + \
            ((attempt.dialog.to_note(),) if attempt.dialog is not None else ())
        self._out.append(NoteAnswered(self.invite.call_id, now, dialogs))
        self._reply_caller(200, response.reason, response)
        self._start_media_check(attempt, now)
        self._sdp_sent = {Side.CALLER: self._to_caller_last, Side.CALLEE: self._to_callee_last}
        self._arm_refresh(Side.CALLER, leg_timer(self.ctx.params, self.invite))
        self._arm_refresh(Side.CALLEE, leg_timer(self.ctx.params, response))
        if self.max_duration > 0:
            self._set_timer("limit", self.max_duration)

    def _on_stray_response(self, event: StrayResponse, now: float) -> None:
        """A retransmitted 2xx from a destination (our ACK was lost): ACK it again."""
        response = event.response
        if 200 <= response.status < 300 and response.cseq.method == "INVITE":
            for attempt in self.attempts:
                dialog = attempt.dialog
                if dialog is not None and dialog.call_id == event.call_id and \
                        attempt.ack_bytes is not None:
                    self._out.append(Send(attempt.ack_bytes, dialog.next_peer()))

    # -- session refresh and media liveness ------------------------------------------------

    def _arm_refresh(self, side: Side, timer: LegTimer) -> None:
        if self.ended:
            return
        self._leg_timers[side] = timer
        self._set_timer(f"refresh-{side.value}", timer.interval)

    def _refresh(self, side: Side, now: float) -> None:
        """Keep one leg alive (docs/media.md, call liveness); a dead peer ends the call."""
        dialog = self._dialog(side)
        timer = self._leg_timers.get(side)
        if self.ended or dialog is None or timer is None or self.state != CallState.CONFIRMED:
            return
        if not timer.use_update and (self._reinvite is not None or side in self._refreshing):
            # An INVITE transaction is in progress in the dialog: try again shortly.
            self._set_timer(f"refresh-{side.value}", GLARE_RETRY)
            return
        request = refresh_request(dialog, timer, self._sdp_sent.get(side, b""))
        if request.method == "INVITE":
            self._refreshing.add(side)
        self._transact(request, dialog.next_peer(), RefreshWait(side, timer, request))

    def _refresh_answered(self, wait: RefreshWait, response: Response, now: float) -> None:
        if response.status < 200:
            return
        self._refreshing.discard(wait.side)
        request = wait.request
        dialog = self._dialog(wait.side)
        if request.method == "INVITE" and response.status < 300 and dialog is not None:
            ack = dialog.create_request("ACK", cseq=request.cseq.number)
            self._out.append(Send(ack.to_bytes(), dialog.next_peer()))
        if response.status in (408, 481):
            self._refresh_failed(wait.side, str(response.status), now)
        else:
            self._arm_refresh(wait.side, wait.timer)

    def _refresh_failed(self, side: Side, why: str, now: float) -> None:
        if self.ended:
            return
        log.info("call %d: %s did not answer the session refresh (%s)", self.no, side.value,
                 why)
        self._hang_up_both("system", f"session refresh failed ({side.value} {why})", now)

    def _start_media_check(self, attempt: Attempt, now: float) -> None:
        """RTP interruption check per the gateways' ``media_check`` (relayed calls only)."""
        if self.media is None:
            return
        checks = media_checks(self.origin, self.origin_media_check,
                              attempt.destination.gateway)
        if checks:
            self._media_checks = checks
            self.media.watch(now)
            self._set_timer("media-check", MEDIA_CHECK_EVERY)

    def _check_media(self, now: float) -> None:
        if self.ended or self.media is None:
            return
        self._out.append(CheckMedia())  # MediaReport follows

    def _on_media_report(self, event: MediaReport, now: float) -> None:
        if self.ended or self.media is None or self._media_checks == {}:
            return
        timeout = float(self.ctx.params.integer("SS_MEDIA_CHECK_TIMEOUT"))
        silent = self.media.silent_direction(self._media_checks, timeout, now, event.idle)
        if silent is not None:
            log.info("call %d: no RTP %s for %.0f s; hanging up", self.no, silent, timeout)
            self._hang_up_both("system", f"RTP interruption ({silent})", now)
            return
        self._set_timer("media-check", MEDIA_CHECK_EVERY)

    # -- toward the caller -----------------------------------------------------------------

    def _reply_caller(self, status: int, reason: str | None, source: Response | None) -> None:
        sent, own_reason = status, reason
        if status >= 300:
            # The customer's failure-code map: the caller hears ``sent``, the CDR keeps
            # ``status`` as the call's final code (docs/carrier-controls.md).
            sent = self.origin.failure_codes.sent(status)
            if sent != status:
                reason = None
        response = caller_response(self.invite, self.inbound, sent, reason, self.ctx.params)
        if source is not None and source.body:
            response.add("Content-Type", source.get("Content-Type") or "application/sdp")
            response.body = self._to_caller(source.body)
        if status >= 200:
            self.final_code = status
            self.final_reason = response.reason if sent == status else \
                own_reason or default_reason(status)
            self.caller_code = sent
        answered = 200 <= status < 300
        # A 2xx is sent again by its transaction until its ACK confirms it; no ACK in
        # 64*T1 ends the call (NoAck).
        self._out.append(Respond(self.server, response, await_ack=answered))

    def _on_no_ack(self, event: NoAck, now: float) -> None:
        if self.state is CallState.ANSWERED:
            log.info("call %d: no ACK from caller; hanging up", self.no)
            self._bye(Side.CALLER)
            self._bye(Side.CALLEE)
            self._finish(*(self._hangup_after_ack or ("system", "no ACK from caller")), now)

    def _callee_gone(self) -> None:
        """The destination's dialog is over (its BYE, or ours) while the caller has not
        ACKed our 200 yet: its capacity is free, the caller's BYE waits for the ACK."""
        attempt = self.attempt
        if attempt is not None and attempt.open:
            if attempt.ack_bytes is None and attempt.state is AttemptState.ANSWERED:
                self._ack(attempt)  # a late offer's 2xx, ACKed all the same
            self._close(attempt)
            if attempt.dialog is not None:
                self._out.append(ForgetLeg(attempt.dialog.call_id))

    def _fail_caller(self, code: int, reason: str | None, hangup_by: str, why: str,
                     now: float) -> None:
        if self.state not in FINAL_SENT:
            self._reply_caller(code, reason, None)
        self._finish(hangup_by, why, now)

    # -- events from the legs --------------------------------------------------------------

    def _on_cancel(self, event: CallerCancel, now: float) -> None:
        if self.state in FINAL_SENT:
            return
        self._reply_caller(487, None, None)
        self._abandon_current(now)
        self._finish("caller", "caller CANCEL", now)

    def _abandon_current(self, now: float) -> None:
        attempt = self.attempt
        if attempt is not None and attempt.open:
            self._finish_attempt(attempt, "cancelled", now)
            self._abandon(attempt)

    def _on_ack(self, event: AckReceived, now: float) -> None:
        side, request = event.side, event.request
        if side is Side.CALLER and self.state is CallState.ANSWERED:
            self._step(CallStep.ACK)
            self._out.append(Confirm(self.server))
            if self._late_offer and self.attempt is not None and \
                    self.attempt.ack_bytes is None:
                self._ack(self.attempt, self._to_callee(request.body),
                          request.get("Content-Type"))
            if self._hangup_after_ack is not None:
                self._bye(Side.CALLER)
                self._finish(*self._hangup_after_ack, now)
            return
        pending = self._reinvite
        if pending is not None and pending.origin is side and pending.answer is not None:
            self._reinvite = None
            self._out.append(Confirm(pending.server))
            other = self._dialog(_other(side))
            if other is not None:
                body = self._cross(request.body, side)
                ack = other.create_request("ACK", body, request.get("Content-Type"),
                                           cseq=pending.cseq or other.local_seq)
                self._out.append(Send(ack.to_bytes(), other.next_peer()))

    def _on_request(self, event: InDialogRequest, now: float) -> None:
        """An in-dialog request (not ACK, not CANCEL) from one leg."""
        side, request, server = event.side, event.request, event.server
        method = request.method
        outbound = self.outbound
        if side is Side.CALLEE and (outbound is None or request.call_id != outbound.call_id):
            self._on_left_leg(request, server)
            return
        dialog = self._dialog(side)
        if dialog is not None:
            seq = request.cseq.number
            if dialog.remote_seq is not None and seq < dialog.remote_seq:
                # Out of order (RFC 3261 12.2.2).
                self._out.append(Respond(server, make_response(request, 500)))
                return
            dialog.remote_seq = seq
        if method == "BYE":
            self._out.append(Respond(server, make_response(request, 200)))
            if self.state is CallState.ANSWERED and side is Side.CALLEE:
                self._callee_gone()
                self._hangup_after_ack = self._hangup_after_ack or ("callee", "callee BYE")
            elif self.state in (CallState.ANSWERED, CallState.CONFIRMED):
                self._bye(_other(side))
                self._finish(side.value, f"{side.value} BYE", now)
            elif side is Side.CALLER:
                self._on_cancel(CallerCancel(), now)
            return
        other = self._dialog(_other(side))
        if other is None or other.remote_tag is None or self.ended:
            self._out.append(Respond(server, make_response(request, 481)))
            return
        if method == "INVITE":
            if self.state is not CallState.CONFIRMED:
                # The call's own INVITE transaction is still open (RFC 3261 14.1, 14.2).
                self._out.append(Respond(server, self._early_reinvite_refusal(request, side)))
                return
            if self._reinvite is not None or self._refreshing:  # glare (RFC 3261 14.1)
                self._out.append(Respond(server, make_response(request, 491)))
                return
            self._reinvite = PendingReinvite(side, server, request)
        elif method not in RELAYED_METHODS:
            self._out.append(Respond(server, make_response(request, 501)))
            return
        media = self.media
        if media is not None and (more := media.grow(media.needs(request.body))):
            # An offer with more m= lines than the call relays (video added, a T.38
            # stream beside the audio): their relay ports first, then the offer.
            token = self._token()
            self._growing[token] = (RelayWait(request, server, side), more)
            self._out.append(GrowMedia(token, more))
            return
        self._relay_request(RelayWait(request, server, side), other)

    def _early_reinvite_refusal(self, request: Request, side: Side) -> Response:
        """A re-INVITE before the call is confirmed: from the caller before its final
        response, 500 with a Retry-After of 0 to 10 s (RFC 3261 14.2); otherwise one
        INVITE transaction is already in progress in a dialog of the call: 491."""
        if side is Side.CALLER and self.state not in FINAL_SENT:
            response = make_response(request, 500)
            response.add("Retry-After", str(self.no % 11))
            return response
        return make_response(request, 491)

    def _on_left_leg(self, request: Request, server: ServerTransaction) -> None:
        """A request in the dialog of an attempt the call gave up (a 2xx that raced our
        CANCEL, ACKed and hung up): its BYE is answered 200, anything else 481."""
        if request.method == "BYE":
            self._out.append(Respond(server, make_response(request, 200)))
            for attempt in self.attempts:
                dialog = attempt.dialog
                if dialog is not None and dialog.call_id == request.call_id and attempt.open:
                    if attempt.state is AttemptState.ANSWERED:
                        attempt.hung_up()
                    self._close(attempt)
            return
        self._out.append(Respond(server, make_response(request, 481)))

    def _on_media_grown(self, event: MediaGrown, now: float) -> None:
        waiting = self._growing.pop(event.token, None)
        if waiting is None:
            return
        wait, count = waiting
        media = self.media
        if event.error is not None:  # no free port pair: the extra m= lines are declined
            log.warning("call %d: no relay ports for more streams (%s)", self.no,
                        event.error)
            if media is not None:
                media.not_started(count)
        elif media is not None and not self.ended:
            self._update_media(media.started(event.ports))
        other = self._dialog(_other(wait.origin))
        if self.ended or other is None:
            if wait.request.method == "INVITE":
                self._reinvite = None
            self._out.append(Respond(wait.server, make_response(wait.request, 481)))
            return
        self._relay_request(wait, other)

    def _relay_request(self, wait: RelayWait, other: Dialog) -> None:
        request = wait.request
        relayed = relayed_request(request, other, self._cross(request.body, wait.origin))
        pending = self._reinvite
        if pending is not None and pending.request is request:
            pending.cseq = relayed.cseq.number  # its ACK's (RFC 3261 13.2.2.4)
        self._transact(relayed, other.next_peer(), wait)

    def _relay_back(self, wait: RelayWait, response: Response) -> None:
        if response.status == 100:
            return
        request, origin = wait.request, wait.origin
        out = relayed_response(request, response, self._dialog(origin),
                               self._cross(response.body, _other(origin)))
        if request.method == "INVITE" and self._reinvite is not None:
            if 200 <= response.status < 300:
                self._reinvite.answer = response
            elif response.status >= 300:
                self._reinvite = None
        self._out.append(Respond(wait.server, out))

    def _relay_timeout(self, wait: RelayWait) -> None:
        if wait.request.method == "INVITE":
            self._reinvite = None
        self._out.append(Respond(wait.server, make_response(wait.request, 408)))

    # -- teardown --------------------------------------------------------------------------

    def _on_hang_up(self, event: HangUp, now: float) -> None:
        """End the call from our side (an operator, a graceful stop)."""
        if self.state in (CallState.ANSWERED, CallState.CONFIRMED):
            self._hang_up_both("system", event.why, now)
        elif not self.ended:
            self._abandon_current(now)
            self._fail_caller(503, "Service Unavailable", "system", event.why, now)

    def _hang_up_both(self, hangup_by: str, why: str, now: float) -> None:
        """BYE to both legs and the end; before the caller's ACK of our 200, the caller's
        BYE (and the end) wait for that ACK (RFC 3261 15), the destination's does not."""
        if self.state is CallState.ANSWERED:
            self._bye(Side.CALLEE)
            self._callee_gone()
            self._hangup_after_ack = self._hangup_after_ack or (hangup_by, why)
            return
        self._bye(Side.CALLER)
        self._bye(Side.CALLEE)
        self._finish(hangup_by, why, now)

    def _bye(self, side: Side) -> None:
        if side is Side.CALLEE:
            attempt = self.attempt
            if attempt is not None and attempt.open:
                self._bye_attempt(attempt)
                if attempt.dialog is not None:
                    self._out.append(ForgetLeg(attempt.dialog.call_id))
            return
        if self.inbound.remote_tag is None:
            return
        self._transact(self.inbound.create_request("BYE"), self.inbound.next_peer(), None)

    def _cross(self, body: bytes, sender: Side) -> bytes:
        """A body crossing from ``sender`` to the other leg, through the relay if any."""
        return self._to_callee(body) if sender is Side.CALLER else self._to_caller(body)

    def _dialog(self, side: Side) -> Dialog | None:
        return self.inbound if side is Side.CALLER else self.outbound

    def _finish(self, hangup_by: str, why: str, now: float) -> None:
        if self.ended:
            return
        self._step(CallStep.END)
        self.ended = True
        self.end_at = now
        for name in sorted(self.timers):
            self._out.append(CancelTimer(name))
        self.timers.clear()
        self._out.append(Confirm(self.server))  # no more 200s to the caller, no hold on the call
        self.hangup_by = hangup_by
        self.termination = why
        if self._reserved is not None:
            self._give_back()
        for attempt in self.attempts:
            attempt.finish("answered" if attempt.final_code == 200 else "abandoned", now)
            attempt.timer = None
            if attempt.open:
                attempt.open = False
                self._out.append(Release(attempt.destination))
        self._out.append(CallEnded())
        self._out.append(WriteCdr(self.cdr_record(now, hangup_by, why),
                            [a.record(now) for a in self.attempts], self.media))
        log.info("call %d ended caller=%s callee=%s code=%d by=%s reason=%s attempts=%d "
                 "call-id=%s", self.no, self.caller, self.callee, self.final_code, hangup_by,
                 why, len(self.attempts), self.invite.call_id)

    # -- what the call says about itself ---------------------------------------------------

    def cdr_record(self, end: float, hangup_by: str, why: str) -> CdrRecord:
        """The call's CDR as it stands (also noted at start, for crash recovery)."""
        return call_record(self, end, hangup_by, why)

    def snapshot(self) -> dict[str, object]:
        return call_snapshot(self)


# The core's step for each kind of event: functions of the class, not bound methods kept
# on each call (those would tie every call into a reference cycle).
_HANDLERS: dict[type, Callable[[Call, Any, float], None]] = {
    Reply: Call._on_reply,
    NoReply: Call._on_no_reply,
    TimerFired: Call._on_timer,
    NoAck: Call._on_no_ack,
    CallerCancel: Call._on_cancel,
    AckReceived: Call._on_ack,
    InDialogRequest: Call._on_request,
    MediaStarted: Call._on_media_started,
    MediaGrown: Call._on_media_grown,
    RtpStarted: Call._on_rtp_started,
    MediaReport: Call._on_media_report,
    VendorResolved: Call._on_resolved,
    Reserved: Call._on_reserved,
    StrayResponse: Call._on_stray_response,
    HangUp: Call._on_hang_up,
}
