"""One bridged call: the caller's leg (we are its UAS) and the outbound attempts.

The legs are separate dialogs with their own Call-IDs, tags and CSeqs. This module
owns what happens between them: trying destinations in order under the switching
rules (``failover``), relaying provisional and final responses, ACK, BYE, CANCEL,
re-INVITE and other in-dialog requests, and the CDR with its attempts.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from b2bua.calls import failover
from b2bua.calls.anchor import CallMedia, relay_wanted
from b2bua.calls.attempt import ALLOW, Attempt
from b2bua.calls.cdr import CdrRecord
from b2bua.calls.endpoints import Destination, Origin
from b2bua.calls.failover import Next, SwitchRules, Timer
from b2bua.calls.liveness import LegTimer, answer_headers, leg_timer
from b2bua.routing.dns import Plan, Target
from b2bua.routing.gateways import RoutingGateway
from b2bua.sip.dialog import Dialog, copy_record_route, origin_host
from b2bua.sip.message import Request, Response, make_response
from b2bua.sip.peer import Peer
from b2bua.sip.transaction import ServerTransaction, TimerHandle
from b2bua.storage.active_calls import note_answered, note_ended

if TYPE_CHECKING:
    from b2bua.calls.switchboard import Switchboard

log = logging.getLogger("b2bua.call")

__all__ = ["ALLOW", "Call", "CallState", "Side"]

# In-dialog requests relayed to the other leg; anything else gets 501.
RELAYED_METHODS = frozenset({"INFO", "UPDATE", "OPTIONS", "MESSAGE", "NOTIFY"})
# Headers carried across the B2BUA with a relayed request or response body.
CARRIED_HEADERS = ("Content-Disposition", "Info-Package", "Event", "Subscription-State")


class CallState(Enum):
    ROUTING = "routing"
    PROCEEDING = "proceeding"  # INVITE sent to a destination, nothing back beyond 100
    EARLY = "early"  # a 18x relayed to the caller
    ANSWERED = "answered"  # 200 sent to the caller, waiting for its ACK
    CONFIRMED = "confirmed"
    ENDED = "ended"


class Side(Enum):
    CALLER = "caller"
    CALLEE = "callee"


def map_vendor_failure(status: int) -> int:
    """What the caller hears for a vendor's final failure (docs/calls.md)."""
    if status in (401, 407) or 300 <= status < 400:
        return 503
    return status


def _has_sdp(response: Response) -> bool:
    return bool(response.body) and "sdp" in (response.get("Content-Type") or "sdp").lower()


@dataclass(slots=True)
class PendingReinvite:
    origin: Side
    server: ServerTransaction
    request: Request
    answer: Response | None = None


class Call:
    def __init__(self, switchboard: Switchboard, call_no: int, invite: Request, source: Peer,
                 server: ServerTransaction, origin: Origin, callee: str | None = None) -> None:
        self.switchboard = switchboard
        self.no = call_no
        self.invite = invite
        self.source = source
        self.server = server
        self.origin = origin
        stack = switchboard.stack
        # Read once: the relay decision and the media's NAT flag ask again.
        self.caller_nat = self.behind_nat(invite, source)
        self.inbound = Dialog.as_uas(
            invite, source, stack.sent_by, stack.contact(source.transport),
            send_to_source=source.reliable or (
                self.caller_nat and invite.first_raw("Record-Route") is None),
        )
        self.caller = invite.from_.uri.user or ""  # as received
        self.callee = callee if callee is not None else invite.ruri.user or ""
        # The platform numbers: after the mapping side's dial plans and transform.
        self.caller_routed, self.callee_routed = origin.numbers.rewrite(
            self.caller, self.callee, switchboard.numbers.transforms)
        self.state = CallState.ROUTING
        self.callee_phone: str | None = None
        self.route: list[Destination | RoutingGateway] = []
        self._next = 0  # index in route of the next destination to try
        self._hops = 0  # destinations tried: what SS_GATEWAY_SWITCH_LIMIT counts
        # The current gateway's DNS targets not tried yet (RFC 3263: a timeout or 503
        # from one moves to the next before the gateway counts as failed).
        self._targets: list[Target] = []
        self.attempts: list[Attempt] = []
        self.attempt: Attempt | None = None  # the current one; after answer, the answered one
        self.committed = False
        self.failure_codes: list[int] = []
        self.ended = False
        self.start_at = time.time()
        self.cdr_uuid = str(uuid.uuid4())
        self.ringing_at: float | None = None
        self.answer_at: float | None = None
        self.final_code = 0
        self.final_reason = ""
        self.hangup_by = ""
        self.termination = ""
        self._late_offer = not invite.body
        self._reinvite: PendingReinvite | None = None
        self.media: CallMedia | None = None
        self._to_caller_last = b""  # the last SDP each leg got from us (liveness re-INVITE)
        self._to_callee_last = invite.body
        self._sdp_sent: dict[Side, bytes] = {}
        self.origin_media_check = switchboard.origin_media_check(origin)
        self._media_checks: dict[str, str] = {}
        self._check_since = 0.0
        # The call's timers by name (session refresh per leg, media check), set through
        # ``_schedule``: cancelled when they are done or the call ends, as a pending
        # timer holds all of the call's objects until it fires (a refresh in up to 2
        # hours).
        self._call_timers: dict[str, TimerHandle] = {}

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
    def _pin_to_source(cls, invite: Request, source: Peer) -> bool:
        """Send in-dialog requests back to the source address over TCP and when the
        caller is behind NAT; a record-routed caller is reached through its route set,
        whose proxies handle its NAT."""
        if source.reliable:
            return True
        return invite.first_raw("Record-Route") is None and cls.behind_nat(invite, source)

    @property
    def outbound(self) -> Dialog | None:
        return self.attempt.dialog if self.attempt is not None else None

    @property
    def gateway(self) -> RoutingGateway | None:
        return self.attempt.destination.gateway if self.attempt is not None else None

    # -- routing and attempts --------------------------------------------------------------

    def route_and_dial(self) -> None:
        """Lists first; then a registered phone's number goes to the phone, anything else
        to the vendors."""
        groups = self.switchboard.numbers.groups
        refusal = self.origin.numbers.refusal(self.caller_routed, self.callee_routed, groups)
        if refusal is not None:
            self.switchboard.stats.refused_by_lists += 1
            self._fail_caller(403, "Forbidden", "system", refusal)
            return
        phone = self.switchboard.phone_destination(self.callee_routed)
        if phone is not None:
            self.callee_phone = self.callee_routed
            destination, code, why = phone
            if destination is None:
                self._fail_caller(code, None, "system", why)
                return
            self.route = [destination]
            self._dial_first()
            return
        plan = self.switchboard.plan_route(self.callee_routed)
        gateways: list[Destination | RoutingGateway] = []
        first_refusal: str | None = None
        for gw in plan.gateways:
            if self.origin.kind == "vendor" and gw.id == self.origin.id:
                continue  # never back to the vendor the call came from
            refused = gw.numbers.refusal(self.caller_routed, self.callee_routed, groups)
            if refused is None:
                gateways.append(gw)
            elif first_refusal is None:
                first_refusal = f'routing gateway "{gw.name}": {refused}'
        if not gateways:
            if first_refusal is not None:
                self.switchboard.stats.refused_by_lists += 1
                self._fail_caller(403, "Forbidden", "system", first_refusal)
                return
            code = 404 if plan.matched == 0 else 503
            self._fail_caller(code, None, "system", plan.reason_if_empty)
            return
        self.route = gateways
        self._dial_first()

    def _dial_first(self) -> None:
        """Anchor the media first when the relay is wanted, then try the first hop."""
        first = self._destination(self.route[0])
        wanted = relay_wanted(
            str(self.switchboard.params["SS_MEDIAPROXYMODE"]),
            [self.origin.media_relay, first.media_relay],
            nat=self.caller_nat or first.nat,
            encrypted=self.origin.rtp_encryption or first.encrypted,
        )
        if not wanted or (not self.invite.body and not first.encrypted):
            if wanted:
                log.info("call %d: no SDP offer from the caller; media not relayed", self.no)
            self._next_attempt()
            return
        media = self.switchboard.new_media(self)
        if media is None:
            self._next_attempt()
            return
        self.media = media
        self.switchboard.run(self._start_media(media))

    async def _start_media(self, media: CallMedia) -> None:
        try:
            await media.start()
        except Exception as exc:  # no free port pair, or a bind error
            log.warning("call %d: media relay unavailable (%s)", self.no, exc)
            self.media = None
            media.close()
            if not self.ended:
                self._fail_caller(503, "Service Unavailable", "system", "no media port free")
            return
        if self.ended:
            media.close()
            return
        self._next_attempt()

    def offer_body(self, destination: Destination) -> bytes:
        """The caller's SDP as the destination receives it."""
        if self.media is not None:
            self.media.set_destination(destination.nat, destination.encrypted)
        return self._to_callee(self.invite.body)

    def _to_caller(self, body: bytes) -> bytes:
        out = self.media.from_callee(body) if self.media is not None and body else body
        if out:
            self._to_caller_last = out
            self._sdp_sent[Side.CALLER] = out
        return out

    def _to_callee(self, body: bytes) -> bytes:
        out = self.media.from_caller(body) if self.media is not None and body else body
        if out:
            self._to_callee_last = out
            self._sdp_sent[Side.CALLEE] = out
        return out

    def _destination(self, hop: Destination | RoutingGateway,
                     target: Target | None = None) -> Destination:
        """A vendor's numbers are computed for each attempt, from the platform numbers."""
        if isinstance(hop, Destination):
            return hop
        caller, callee = hop.numbers.rewrite(self.caller_routed, self.callee_routed,
                                             self.switchboard.numbers.transforms)
        return Destination.vendor(hop, caller, callee, hop.numbers.pai(caller), target)

    def _next_attempt(self) -> None:
        if self.ended:
            return
        self._targets = []
        limit = self.switchboard.params["SS_GATEWAY_SWITCH_LIMIT"]
        while self._next < len(self.route) and not (limit and self._hops >= limit):
            hop = self.route[self._next]
            self._next += 1
            if isinstance(hop, Destination):
                self._hops += 1
                self._start_attempt(hop)
                return
            # A gateway may have filled up or been taken out of routing since the plan.
            if not self.switchboard.gateway_usable(hop):
                continue
            self._hops += 1
            plan = self.switchboard.vendor_plan(hop)
            if not plan.complete:
                # A cold DNS cache: resolve first, then this gateway's INVITE.
                self.switchboard.run(self._resolve_and_dial(hop))
                return
            if self._dial_gateway(hop, plan):
                return
        sent = [a for a in self.attempts if a.outcome != "dns_failure"]
        if self.failure_codes:
            code = map_vendor_failure(failover.best_final(self.failure_codes))
        else:
            code = 408 if sent else 503
        if sent:
            why = "every routing gateway failed"
        elif self.attempts:
            why = self.attempts[-1].note  # no address for any gateway: the DNS's answer
        else:
            why = "every matching routing gateway is disabled, full or unavailable"
        self._fail_caller(code, None, "callee" if code != 408 and sent else "system", why)

    async def _resolve_and_dial(self, gw: RoutingGateway) -> None:
        plan = await self.switchboard.resolve_vendor(gw)
        if self.ended:
            return
        if not self._dial_gateway(gw, plan):
            self._next_attempt()

    def _dial_gateway(self, gw: RoutingGateway, plan: Plan) -> bool:
        """The gateway's first target; False when its name gave no address (the attempt
        is recorded as a DNS failure and the route goes on)."""
        if not plan.targets:
            self.switchboard.stats.dns_failures += 1
            log.info("call %d: routing gateway %s: %s", self.no, gw.name, plan.failure)
            rules = SwitchRules.resolve(self.switchboard.params, gw)
            attempt = Attempt(self, len(self.attempts) + 1, self._destination(gw), rules,
                              target=None)
            attempt.note = plan.failure
            attempt.finish("dns_failure")
            self.attempts.append(attempt)
            self.attempt = attempt
            return False
        self._targets = list(plan.targets[1:])
        self._start_attempt(self._destination(gw, plan.targets[0]))
        return True

    def _next_target(self, attempt: Attempt) -> bool:
        """After a timeout or 503 from one of a gateway's DNS targets: the next one, unless
        the call is committed to this one."""
        gw = attempt.destination.gateway
        if not self._targets or gw is None or self.committed:
            return False
        target = self._targets.pop(0)
        log.info("call %d: routing gateway %s: next target %s", self.no, gw.name, target)
        self._start_attempt(self._destination(gw, target))
        return True

    def _start_attempt(self, destination: Destination) -> None:
        rules = SwitchRules.resolve(self.switchboard.params, destination.gateway)
        attempt = Attempt(self, len(self.attempts) + 1, destination, rules,
                          target=destination.target)
        self.attempts.append(attempt)
        self.attempt = attempt
        if self.state == CallState.ROUTING:
            self.state = CallState.PROCEEDING
        attempt.start(self, lambda r: self._on_response(attempt, r),
                      lambda: self._on_invite_timeout(attempt))

    def _on_response(self, attempt: Attempt, response: Response) -> None:
        status = response.status
        dialog = attempt.dialog
        assert dialog is not None
        if status < 200:
            if attempt.provisional(status):
                attempt.send_cancel()  # it waited for this first provisional
            if attempt.abandoned:
                return
            if status != 100:
                dialog.update_from_response(response)
            sdp = _has_sdp(response)
            timer = failover.timer_for(status, sdp)
            if timer is not None:
                attempt.arm(timer, self._on_timer)
            if status == 100:
                return
            if failover.commits_on_provisional(attempt.rules, status, sdp):
                self.committed = True
            if self.ringing_at is None:
                self.ringing_at = time.time()
            self.state = CallState.EARLY
            self._reply_caller(status, response.reason, response)
        elif status < 300:
            dialog.update_from_response(response)
            abandoned = attempt.abandoned
            attempt.answered(status)
            if abandoned or self.ended:
                # The answer raced our CANCEL, a timer or a teardown: ACK it, then hang
                # up (RFC 3261 15), so no leg stays up at the vendor.
                attempt.ack()
                attempt.bye()
                return
            self._on_answer(attempt, response)
        else:
            abandoned = attempt.abandoned
            attempt.failed(status)
            self.switchboard.forget_leg(dialog.call_id)
            if abandoned or self.ended:
                return
            self.failure_codes.append(status)
            if status == 503 and self._next_target(attempt):
                return
            gw = attempt.destination.gateway
            if status == 503 and gw is not None:
                self._honour_retry_after(gw, response)
            decision = failover.on_failure(attempt.rules, status, self.committed)
            if decision == Next.END:
                self._fail_caller(map_vendor_failure(status), response.reason, "callee",
                                  f"vendor {status} {response.reason}")
            else:
                self._next_attempt()

    def _honour_retry_after(self, gw: RoutingGateway, response: Response) -> None:
        value = (response.get("Retry-After") or "").split(";")[0].strip()
        if value.isdigit() and int(value) > 0:
            self.switchboard.suspend_gateway(gw, min(int(value), 86400))

    def _on_invite_timeout(self, attempt: Attempt) -> None:
        abandoned = attempt.abandoned
        attempt.timed_out()
        if attempt.dialog is not None:
            self.switchboard.forget_leg(attempt.dialog.call_id)
        if abandoned or self.ended or self._next_target(attempt):
            return
        if failover.on_invite_timeout(attempt.rules) == Next.END:
            self._fail_caller(408, "Request Timeout", "system", "INVITE timeout")
        else:
            self._next_attempt()

    def _on_timer(self, attempt: Attempt, timer: Timer) -> None:
        if attempt is not self.attempt or attempt.abandoned or self.ended:
            return
        attempt.finish(timer.value)
        attempt.cancel()
        if failover.on_timer(attempt.rules, self.committed) == Next.END:
            self._fail_caller(408, "Request Timeout", "system", timer.value.replace("_", " "))
        else:
            self._next_attempt()

    def on_rtp_started(self) -> None:
        """First RTP from the destination side (fed by the media relay)."""
        if self.attempt is not None and failover.commits_on_rtp(self.attempt.rules):
            self.committed = True

    def _on_answer(self, attempt: Attempt, response: Response) -> None:
        if not self._late_offer:
            attempt.ack()
        self.committed = True
        self.answer_at = time.time()
        self.state = CallState.ANSWERED
        note_answered(self.switchboard.cdrs.writer, self.invite.call_id, self.answer_at)
        self._reply_caller(200, response.reason, response)
        self._start_media_check(attempt)
        self._sdp_sent = {Side.CALLER: self._to_caller_last, Side.CALLEE: self._to_callee_last}
        self._arm_refresh(Side.CALLER, leg_timer(self.switchboard.params, self.invite))
        self._arm_refresh(Side.CALLEE, leg_timer(self.switchboard.params, response))

    def _arm_refresh(self, side: Side, timer: LegTimer) -> None:
        if self.ended:
            return
        self._schedule(f"refresh-{side.value}", timer.interval,
                       lambda: self._refresh(side, timer))

    def _refresh(self, side: Side, timer: LegTimer) -> None:
        """Keep one leg alive (docs/media.md, call liveness); a dead peer ends the call."""
        dialog = self._dialog(side)
        if self.ended or dialog is None or self.state != CallState.CONFIRMED:
            return
        method = "UPDATE" if timer.use_update else "INVITE"
        body = b"" if timer.use_update else self._sdp_sent.get(side, b"")
        extra = [("Session-Expires", f"{int(timer.interval * 2)};refresher=uac")] \
            if timer.supported else []
        request = dialog.create_request(method, body, "application/sdp" if body else None,
                                        extra=extra)

        def answered(response: Response) -> None:
            if response.status < 200:
                return
            if method == "INVITE" and response.status < 300:
                ack = dialog.create_request("ACK", cseq=request.cseq.number)
                self.switchboard.stack.send(ack.to_bytes(), dialog.next_peer())
            if response.status in (408, 481):
                self._refresh_failed(side, str(response.status))
            else:
                self._arm_refresh(side, timer)

        self.switchboard.stack.client_transaction(request, dialog.next_peer(), answered,
                                            lambda: self._refresh_failed(side, "no answer"))

    def _refresh_failed(self, side: Side, why: str) -> None:
        if self.ended:
            return
        log.info("call %d: %s did not answer the session refresh (%s)", self.no, side.value,
                 why)
        self._bye(Side.CALLER)
        self._bye(Side.CALLEE)
        self._finish("system", f"session refresh failed ({side.value} {why})")

    def _start_media_check(self, attempt: Attempt) -> None:
        """RTP interruption check per the gateways' ``media_check`` (relayed calls only)."""
        if self.media is None:
            return
        checks = {}
        if self.origin.kind != "phone" and self.origin_media_check != "none":
            checks["a"] = self.origin_media_check
        gw = attempt.destination.gateway
        if gw is not None and gw.media_check != "none":
            checks["b"] = gw.media_check
        if checks:
            self._media_checks = checks
            self._check_since = time.monotonic()
            self._schedule("media-check", 1.0, self._check_media)

    def _check_media(self) -> None:
        if self.ended or self.media is None:
            return
        timeout = float(self.switchboard.params.integer("SS_MEDIA_CHECK_TIMEOUT"))
        silent = self.media.silent_direction(self._media_checks, self._check_since, timeout)
        if silent is not None:
            log.info("call %d: no RTP %s for %.0f s; hanging up", self.no, silent, timeout)
            self._bye(Side.CALLER)
            self._bye(Side.CALLEE)
            self._finish("system", f"RTP interruption ({silent})")
            return
        self._schedule("media-check", 1.0, self._check_media)

    def on_stray_response(self, call_id: str, response: Response) -> None:
        """A retransmitted 2xx from a destination (our ACK was lost): ACK it again."""
        if 200 <= response.status < 300 and response.cseq.method == "INVITE":
            for attempt in self.attempts:
                if attempt.dialog is not None and attempt.dialog.call_id == call_id:
                    attempt.re_ack()

    # -- toward the caller -----------------------------------------------------------------

    def _reply_caller(self, status: int, reason: str | None, source: Response | None) -> None:
        response = make_response(self.invite, status, reason, to_tag=self.inbound.local_tag)
        if 100 < status < 300:
            copy_record_route(self.invite, response)
            response.add("Contact", self.inbound.contact)
            response.add("Allow", ALLOW)
        if source is not None and source.body:
            response.add("Content-Type", source.get("Content-Type") or "application/sdp")
            response.body = self._to_caller(source.body)
        if status >= 200:
            self.final_code = status
            self.final_reason = response.reason
        if 200 <= status < 300:
            for name, value in answer_headers(self.switchboard.params, self.invite):
                response.add(name, value)
        if 200 <= status < 300:
            # The transaction sends the 200 again until on_ack confirms it; no ACK in
            # 64*T1 ends the call.
            self.server.on_no_ack = self._ack_deadline
        self.server.respond(response)

    def _schedule(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        """A call timer by name (replacing one of that name), cancelled when the call
        ends."""
        old = self._call_timers.pop(name, None)
        if old is not None:
            old.cancel()
        self._call_timers[name] = self.switchboard.timers.call_later(delay, callback)

    def _unschedule(self, *names: str) -> None:
        for name in names:
            handle = self._call_timers.pop(name, None)
            if handle is not None:
                handle.cancel()

    def _ack_deadline(self) -> None:
        if self.state == CallState.ANSWERED:
            log.info("call %d: no ACK from caller; hanging up", self.no)
            self._bye(Side.CALLER)
            self._bye(Side.CALLEE)
            self._finish("system", "no ACK from caller")

    def _fail_caller(self, code: int, reason: str | None, hangup_by: str, why: str) -> None:
        if self.state not in (CallState.ANSWERED, CallState.CONFIRMED, CallState.ENDED):
            self._reply_caller(code, reason, None)
        self._finish(hangup_by, why)

    def trying(self) -> None:
        self.server.respond(make_response(self.invite, 100))

    # -- events from the legs --------------------------------------------------------------

    def on_cancel(self) -> None:
        if self.state in (CallState.ANSWERED, CallState.CONFIRMED, CallState.ENDED):
            return
        self._reply_caller(487, None, None)
        if self.attempt is not None and self.attempt.open:
            self.attempt.finish("cancelled")
            self.attempt.cancel()
        self._finish("caller", "caller CANCEL")

    def on_ack(self, request: Request, side: Side) -> None:
        if side == Side.CALLER and self.state == CallState.ANSWERED:
            self.state = CallState.CONFIRMED
            self.server.confirm()
            if self._late_offer and self.attempt is not None:
                self.attempt.ack(self._to_callee(request.body), request.get("Content-Type"))
            return
        pending = self._reinvite
        if pending is not None and pending.origin == side and pending.answer is not None:
            self._reinvite = None
            pending.server.confirm()
            other = self._dialog(_other(side))
            if other is not None:
                body = self._cross(request.body, side)
                ack = other.create_request("ACK", body, request.get("Content-Type"),
                                           cseq=other.local_seq)
                self.switchboard.stack.send(ack.to_bytes(), other.next_peer())

    def on_request(self, request: Request, source: Peer, side: Side) -> None:
        """An in-dialog request (not ACK, not CANCEL) from one leg."""
        stack = self.switchboard.stack
        dialog = self._dialog(side)
        if dialog is not None:
            dialog.remote_seq = request.cseq.number
        server = stack.server_transaction(request, source)
        method = request.method
        if method == "BYE":
            server.respond(make_response(request, 200))
            if self.state in (CallState.ANSWERED, CallState.CONFIRMED):
                self._bye(_other(side))
                self._finish(side.value, f"{side.value} BYE")
            elif side == Side.CALLER:
                self.on_cancel()
            return
        other = self._dialog(_other(side))
        if other is None or other.remote_tag is None or self.ended:
            server.respond(make_response(request, 481))
            return
        if method == "INVITE":
            if self._reinvite is not None:
                server.respond(make_response(request, 491))
                return
            self._reinvite = PendingReinvite(side, server, request)
        elif method not in RELAYED_METHODS:
            server.respond(make_response(request, 501))
            return
        media = self.media
        if media is not None and (more := media.needs(request.body)):
            # An offer with more m= lines than the call relays (video added, a T.38
            # stream beside the audio): their relay ports first, then the offer.
            self.switchboard.run(self._grow_then_relay(media, more, request, server, side))
            return
        self._relay_request(request, server, side, other)

    async def _grow_then_relay(self, media: CallMedia, more: int, request: Request,
                               server: ServerTransaction, side: Side) -> None:
        try:
            await media.grow(more)
        except Exception as exc:  # no free port pair: the extra m= lines are declined
            log.warning("call %d: no relay ports for %d more streams (%s)", self.no, more,
                        exc)
        other = self._dialog(_other(side))
        if self.ended or other is None:
            if request.method == "INVITE":
                self._reinvite = None
            server.respond(make_response(request, 481))
            return
        self._relay_request(request, server, side, other)

    def _relay_request(self, request: Request, server: ServerTransaction, side: Side,
                       other: Dialog) -> None:
        stack = self.switchboard.stack
        method = request.method
        extra = [(h, v) for h in CARRIED_HEADERS for v in request.get_all(h)]
        relayed = other.create_request(method, self._cross(request.body, side),
                                       request.get("Content-Type"), extra=extra)
        stack.client_transaction(
            relayed, other.next_peer(),
            lambda resp: self._relay_back(request, server, resp, side),
            lambda: self._relay_timeout(request, server),
        )

    def _relay_back(self, request: Request, server: ServerTransaction, response: Response,
                    origin: Side) -> None:
        if response.status == 100:
            return
        out = make_response(request, response.status, response.reason)
        dialog = self._dialog(origin)
        if dialog is not None and request.method in ("INVITE", "UPDATE") and \
                200 <= response.status < 300:
            out.add("Contact", dialog.contact)
        for header in ("Content-Type", *CARRIED_HEADERS):
            for value in response.get_all(header):
                out.add(header, value)
        out.body = self._cross(response.body, _other(origin))
        if request.method == "INVITE" and self._reinvite is not None:
            if 200 <= response.status < 300:
                self._reinvite.answer = response
            elif response.status >= 300:
                self._reinvite = None
        server.respond(out)

    def _relay_timeout(self, request: Request, server: ServerTransaction) -> None:
        if request.method == "INVITE":
            self._reinvite = None
        server.respond(make_response(request, 408))

    # -- teardown --------------------------------------------------------------------------

    def hang_up(self, why: str) -> None:
        """End the call from our side (e.g. graceful stop)."""
        if self.state in (CallState.ANSWERED, CallState.CONFIRMED):
            self._bye(Side.CALLER)
            self._bye(Side.CALLEE)
            self._finish("system", why)
        elif not self.ended:
            if self.attempt is not None and self.attempt.open:
                self.attempt.finish("cancelled")
                self.attempt.cancel()
            self._fail_caller(503, "Service Unavailable", "system", why)

    def _bye(self, side: Side) -> None:
        if side == Side.CALLEE:
            if self.attempt is not None and self.attempt.open:
                self.attempt.bye()
                if self.attempt.dialog is not None:
                    self.switchboard.forget_leg(self.attempt.dialog.call_id)
            return
        if self.inbound.remote_tag is None:
            return
        bye = self.inbound.create_request("BYE")
        self.switchboard.stack.client_transaction(bye, self.inbound.next_peer(), lambda _r: None,
                                            lambda: None)

    def _cross(self, body: bytes, sender: Side) -> bytes:
        """A body crossing from ``sender`` to the other leg, through the relay if any."""
        return self._to_callee(body) if sender == Side.CALLER else self._to_caller(body)

    def _dialog(self, side: Side) -> Dialog | None:
        return self.inbound if side == Side.CALLER else self.outbound

    def _finish(self, hangup_by: str, why: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.state = CallState.ENDED
        self._unschedule(*self._call_timers)
        self.server.confirm()  # no more 200s to the caller, and no hold on the call
        self.hangup_by = hangup_by
        self.termination = why
        end = time.time()
        for attempt in self.attempts:
            attempt.finish("answered" if attempt.final_code == 200 else "abandoned")
            attempt.ended_at = attempt.ended_at or end
        self.switchboard.call_ended(self)
        record = self.cdr_record(end, hangup_by, why)
        attempts = [a.record() for a in self.attempts]

        def write_cdr(media: dict[str, Any]) -> None:
            record.media = json.dumps(media)
            self.switchboard.cdrs.submit(record, attempts)
            note_ended(self.switchboard.cdrs.writer, self.invite.call_id)

        if self.media is not None:
            # The CDR carries the relay's final counters (a relay worker reports them
            # once the session's sockets are closed; bounded wait in the pool).
            self.media.finish(write_cdr)
        else:
            write_cdr({"relayed": False})
        log.info("call %d ended caller=%s callee=%s code=%d by=%s reason=%s attempts=%d "
                 "call-id=%s", self.no, self.caller, self.callee, self.final_code, hangup_by,
                 why, len(self.attempts), self.invite.call_id)

    def cdr_record(self, end: float, hangup_by: str, why: str) -> CdrRecord:
        """The call's CDR as it stands (also noted at start, for crash recovery)."""
        gw = self.gateway
        return CdrRecord(
            call_id_in=self.invite.call_id,
            call_id_out=self.outbound.call_id if self.outbound else None,
            caller=self.caller,
            callee=self.callee,
            source=f"{self.source.host}:{self.source.port}",
            mapping_gateway_id=self.origin.id if self.origin.kind == "gateway" else None,
            mapping_gateway=self.origin.name if self.origin.kind == "gateway" else None,
            routing_gateway_id=gw.id if gw else None,
            routing_gateway=gw.name if gw else None,
            start_at=self.start_at,
            ringing_at=self.ringing_at,
            answer_at=self.answer_at,
            end_at=end,
            duration=round(end - self.answer_at, 3) if self.answer_at else 0.0,
            final_code=self.final_code,
            final_reason=self.final_reason,
            hangup_by=hangup_by,
            termination_reason=why,
            phone=self.origin.name if self.origin.kind == "phone" else None,
            callee_phone=self.callee_phone,
            caller_routed=self.caller_routed,
            callee_routed=self.callee_routed,
            caller_sent=self.attempt.caller_sent if self.attempt else None,
            callee_sent=self.attempt.callee_sent if self.attempt else None,
            origin_vendor=self.origin.name if self.origin.kind == "vendor" else None,
            cdr_uuid=self.cdr_uuid,
        )

    def snapshot(self) -> dict[str, object]:
        return {
            "id": self.no,
            "state": self.state.value,
            "caller": self.caller,
            "callee": self.callee,
            "source": f"{self.source.transport}:{self.source.host}:{self.source.port}",
            "mapping_gateway": self.origin.name if self.origin.kind == "gateway" else None,
            "phone": self.origin.name if self.origin.kind == "phone" else None,
            "callee_phone": self.callee_phone,
            "routing_gateway": self.gateway.name if self.gateway else None,
            "attempts": len(self.attempts),
            "call_id_in": self.invite.call_id,
            "call_id_out": self.outbound.call_id if self.outbound else None,
            "start_at": self.start_at,
            "ringing_at": self.ringing_at,
            "answer_at": self.answer_at,
            "media": self.media.stats() if self.media is not None else {"relayed": False},
        }


def _other(side: Side) -> Side:
    return Side.CALLEE if side == Side.CALLER else Side.CALLER
