"""One bridged call: the caller's leg (we are its UAS) and the vendor leg (we are its UAC).

The two legs are separate dialogs with their own Call-IDs, tags and CSeqs. This
module owns what happens between them: relaying provisional and final responses,
ACK, BYE, CANCEL, re-INVITE and other in-dialog requests, and the CDR.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from b2bua.calls.cdr import CdrRecord
from b2bua.calls.endpoints import Destination, Origin
from b2bua.routing.gateways import RoutingGateway
from b2bua.sip.dialog import Dialog, new_call_id, new_tag
from b2bua.sip.message import Request, Response, make_response
from b2bua.sip.transaction import T1, T2, TIMER_64T1, ClientTransaction, ServerTransaction
from b2bua.sip.transport import Peer

if TYPE_CHECKING:
    from b2bua.calls.b2bua import B2bua

log = logging.getLogger("b2bua.call")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, MESSAGE, NOTIFY"
# In-dialog requests relayed to the other leg; anything else gets 501.
RELAYED_METHODS = frozenset({"INFO", "UPDATE", "OPTIONS", "MESSAGE", "NOTIFY"})
# Headers carried across the B2BUA with a relayed request or response body.
CARRIED_HEADERS = ("Content-Disposition", "Info-Package", "Event", "Subscription-State")


class CallState(Enum):
    ROUTING = "routing"
    PROCEEDING = "proceeding"  # INVITE sent to a vendor, nothing back beyond 100
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


@dataclass(slots=True)
class PendingReinvite:
    origin: Side
    server: ServerTransaction
    request: Request
    answer: Response | None = None


class Call:
    def __init__(self, b2bua: B2bua, call_no: int, invite: Request, source: Peer,
                 server: ServerTransaction, origin: Origin) -> None:
        self.b2bua = b2bua
        self.no = call_no
        self.invite = invite
        self.source = source
        self.server = server
        self.origin = origin
        stack = b2bua.stack
        self.inbound = Dialog.as_uas(
            invite, source, stack.sent_by, stack.contact(source.transport),
            send_to_source=self._pin_to_source(invite, source),
        )
        self.caller = invite.from_.uri.user or ""
        self.callee = invite.ruri.user or ""
        self.state = CallState.ROUTING
        self.gateway: RoutingGateway | None = None
        self.callee_phone: str | None = None
        self.destination: Destination | None = None
        self.outbound: Dialog | None = None
        self.out_invite: Request | None = None
        self.out_txn: ClientTransaction | None = None
        self.got_provisional = False
        self.cancel_pending = False
        self.ended = False
        self.out_leg_open = False
        self.start_at = time.time()
        self.ringing_at: float | None = None
        self.answer_at: float | None = None
        self.final_code = 0
        self.final_reason = ""
        self.hangup_by = ""
        self.termination = ""
        self._ok_to_caller: bytes | None = None
        self._ok_peer = stack.response_peer(invite, source)
        self._ack_to_callee: bytes | None = None
        self._late_offer = not invite.body
        self._reinvite: PendingReinvite | None = None

    @staticmethod
    def _pin_to_source(invite: Request, source: Peer) -> bool:
        """Send in-dialog requests back to the source address over TCP and when the
        Contact names another host (the caller is behind NAT)."""
        if source.reliable:
            return True
        contact = invite.get("Contact") or ""
        return source.host not in contact

    # -- outbound attempt ------------------------------------------------------------------

    def route_and_dial(self) -> None:
        """A registered phone's number goes to the phone; anything else to the vendors."""
        phone = self.b2bua.phone_destination(self.callee)
        if phone is not None:
            self.callee_phone = self.callee
            destination, code, why = phone
            if destination is None:
                self._fail_caller(code, None, "system", why)
                return
            self._dial(destination)
            return
        plan = self.b2bua.plan_route(self.callee)
        if not plan.gateways:
            code = 404 if plan.matched == 0 else 503
            self._fail_caller(code, None, "system", plan.reason_if_empty)
            return
        self._dial(Destination.vendor(plan.gateways[0], self.callee))

    def _dial(self, destination: Destination) -> None:
        stack = self.b2bua.stack
        params = self.b2bua.params
        self.gateway = destination.gateway
        self.b2bua.leg_started(destination)
        peer = destination.peer
        transport = peer.transport
        ruri = destination.request_uri
        display = self.invite.from_.display
        from_uri = f"<sip:{self.caller}@{stack.advertised_host}>"
        if display:
            from_uri = f'"{display}" {from_uri}'
        outbound = Dialog(
            call_id=new_call_id(stack.advertised_host),
            local_tag=new_tag(),
            local_uri=from_uri,
            remote_uri=destination.to_uri,
            remote_target=ruri,
            peer=peer,
            via_host=stack.sent_by,
            contact=stack.contact(transport),
            pinned=destination.pinned,
        )
        max_forwards = self.invite.max_forwards
        extra = [("Allow", ALLOW)]
        request = outbound.create_request(
            "INVITE", self.invite.body, self.invite.get("Content-Type"), cseq=1, extra=extra
        )
        request.set("Max-Forwards", str(70 if max_forwards is None else max_forwards - 1))
        self.outbound = outbound
        self.out_invite = request
        self.state = CallState.PROCEEDING
        self.out_leg_open = True
        self.destination = destination
        self.b2bua.register_leg(outbound.call_id, self, Side.CALLEE)
        self.out_txn = stack.client_transaction(
            request, peer, self._on_out_response, self._on_out_timeout,
            timeout=float(params["SS_SIP_TIMEOUT_INVITE"]),
            resend=params["SS_SIP_RESEND_INTERVAL"],
        )

    def _on_out_response(self, response: Response) -> None:
        status = response.status
        assert self.outbound is not None
        if status < 200:
            if status == 100:
                return
            self.got_provisional = True
            if self.ended or self.cancel_pending:
                self._send_cancel()
                return
            self.outbound.update_from_response(response)
            if self.ringing_at is None:
                self.ringing_at = time.time()
            self.state = CallState.EARLY
            self._reply_caller(status, response.reason, response)
        elif status < 300:
            self.outbound.update_from_response(response)
            self._on_out_answer(response)
        else:
            self._close_out_leg()
            if self.ended:
                return
            self._fail_caller(map_vendor_failure(status), response.reason, "callee",
                              f"vendor {status} {response.reason}")

    def _on_out_answer(self, response: Response) -> None:
        assert self.outbound is not None
        if self.ended or self.cancel_pending:
            # The answer raced our CANCEL or a teardown: ACK it, then hang up (RFC 3261 15).
            self._ack_callee(b"", None)
            self._bye(Side.CALLEE)
            self._close_out_leg()
            return
        if not self._late_offer:
            self._ack_callee(b"", None)
        self.answer_at = time.time()
        self.state = CallState.ANSWERED
        self._reply_caller(200, response.reason, response)

    def _on_out_timeout(self) -> None:
        self._close_out_leg()
        if self.ended:
            return
        self._fail_caller(408, "Request Timeout", "system", "INVITE timeout")

    def _send_cancel(self) -> None:
        """CANCEL the vendor INVITE (RFC 3261 9.1): same branch, Request-URI, tags."""
        if self.out_invite is None or self.out_txn is None:
            return
        inv = self.out_invite
        headers = [("Via", inv.get("Via") or "")]
        headers += [("Route", r) for r in inv.get_all("Route")]
        headers += [
            ("Max-Forwards", "70"),
            ("From", inv.get("From") or ""),
            ("To", inv.get("To") or ""),
            ("Call-ID", inv.call_id),
            ("CSeq", f"{inv.cseq.number} CANCEL"),
        ]
        cancel = Request("CANCEL", inv.uri, headers)
        assert self.destination is not None
        peer = self.destination.peer
        self.cancel_pending = False
        self.b2bua.stack.client_transaction(cancel, peer, lambda _r: None, lambda: None)

    def _ack_callee(self, body: bytes, content_type: str | None) -> None:
        assert self.outbound is not None
        ack = self.outbound.create_request("ACK", body, content_type, cseq=1)
        self._ack_to_callee = ack.to_bytes()
        self.b2bua.stack.send(self._ack_to_callee, self.outbound.next_peer())

    def on_stray_response(self, response: Response) -> None:
        """A retransmitted 2xx from the vendor (our ACK was lost): ACK it again."""
        if (response.status >= 200 and response.status < 300
                and response.cseq.method == "INVITE" and self._ack_to_callee
                and self.outbound is not None):
            self.b2bua.stack.send(self._ack_to_callee, self.outbound.next_peer())

    # -- toward the caller -----------------------------------------------------------------

    def _reply_caller(self, status: int, reason: str | None, source: Response | None) -> None:
        response = make_response(self.invite, status, reason, to_tag=self.inbound.local_tag)
        if 100 < status < 300:
            response.add("Contact", self.inbound.contact)
            response.add("Allow", ALLOW)
        if source is not None and source.body:
            response.add("Content-Type", source.get("Content-Type") or "application/sdp")
            response.body = source.body
        if status >= 200:
            self.final_code = status
            self.final_reason = response.reason
        self.server.respond(response)
        if 200 <= status < 300:
            self._ok_to_caller = response.to_bytes()
            if not self.source.reliable:
                self.b2bua.timers.call_later(T1, lambda: self._retransmit_ok(T1, T1))
            self.b2bua.timers.call_later(TIMER_64T1, self._ack_deadline)

    def _retransmit_ok(self, interval: float, elapsed: float) -> None:
        if self.state != CallState.ANSWERED or self._ok_to_caller is None:
            return
        self.b2bua.stack.send(self._ok_to_caller, self._ok_peer)
        nxt = min(interval * 2, T2)
        if elapsed + nxt < TIMER_64T1:
            self.b2bua.timers.call_later(nxt, lambda: self._retransmit_ok(nxt, elapsed + nxt))

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
        if self.out_txn is not None and self.out_leg_open:
            if self.got_provisional:
                self._send_cancel()
            else:
                self.cancel_pending = True
        self._finish("caller", "caller CANCEL")

    def on_ack(self, request: Request, side: Side) -> None:
        if side == Side.CALLER and self.state == CallState.ANSWERED:
            self.state = CallState.CONFIRMED
            self._ok_to_caller = None
            if self._late_offer:
                self._ack_callee(request.body, request.get("Content-Type"))
            return
        pending = self._reinvite
        if pending is not None and pending.origin == side and pending.answer is not None:
            self._reinvite = None
            other = self._dialog(_other(side))
            if other is not None:
                ack = other.create_request("ACK", request.body, request.get("Content-Type"),
                                           cseq=other.local_seq)
                self.b2bua.stack.send(ack.to_bytes(), other.next_peer())

    def on_request(self, request: Request, source: Peer, side: Side) -> None:
        """An in-dialog request (not ACK, not CANCEL) from one leg."""
        stack = self.b2bua.stack
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
        extra = [(h, v) for h in CARRIED_HEADERS for v in request.get_all(h)]
        relayed = other.create_request(method, request.body, request.get("Content-Type"),
                                       extra=extra)
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
        out.body = response.body
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
            if self.out_leg_open and self.got_provisional:
                self._send_cancel()
            self._fail_caller(503, "Service Unavailable", "system", why)

    def _bye(self, side: Side) -> None:
        dialog = self._dialog(side)
        if dialog is None or dialog.remote_tag is None:
            return
        if side == Side.CALLEE and not self.out_leg_open and self.state == CallState.ENDED:
            return
        bye = dialog.create_request("BYE")
        self.b2bua.stack.client_transaction(bye, dialog.next_peer(), lambda _r: None,
                                            lambda: None)
        if side == Side.CALLEE:
            self._close_out_leg()

    def _dialog(self, side: Side) -> Dialog | None:
        return self.inbound if side == Side.CALLER else self.outbound

    def _close_out_leg(self) -> None:
        if self.out_leg_open and self.outbound is not None:
            self.out_leg_open = False
            self.b2bua.forget_leg(self.outbound.call_id)
            if self.destination is not None:
                self.b2bua.leg_ended(self.destination)

    def _finish(self, hangup_by: str, why: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.state = CallState.ENDED
        self.hangup_by = hangup_by
        self.termination = why
        end = time.time()
        self.b2bua.call_ended(self)
        duration = round(end - self.answer_at, 3) if self.answer_at else 0.0
        self.b2bua.cdrs.submit(CdrRecord(
            call_id_in=self.invite.call_id,
            call_id_out=self.outbound.call_id if self.outbound else None,
            caller=self.caller,
            callee=self.callee,
            source=f"{self.source.host}:{self.source.port}",
            mapping_gateway_id=self.origin.id if self.origin.kind == "gateway" else None,
            mapping_gateway=self.origin.name if self.origin.kind == "gateway" else None,
            routing_gateway_id=self.gateway.id if self.gateway else None,
            routing_gateway=self.gateway.name if self.gateway else None,
            start_at=self.start_at,
            ringing_at=self.ringing_at,
            answer_at=self.answer_at,
            end_at=end,
            duration=duration,
            final_code=self.final_code,
            final_reason=self.final_reason,
            hangup_by=hangup_by,
            termination_reason=why,
            phone=self.origin.name if self.origin.kind == "phone" else None,
            callee_phone=self.callee_phone,
        ))
        log.info("call %d ended caller=%s callee=%s code=%d by=%s reason=%s call-id=%s",
                 self.no, self.caller, self.callee, self.final_code, hangup_by, why,
                 self.invite.call_id)

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
            "call_id_in": self.invite.call_id,
            "call_id_out": self.outbound.call_id if self.outbound else None,
            "start_at": self.start_at,
            "ringing_at": self.ringing_at,
            "answer_at": self.answer_at,
        }


def _other(side: Side) -> Side:
    return Side.CALLEE if side == Side.CALLER else Side.CALLER

