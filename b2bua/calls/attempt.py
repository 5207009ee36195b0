"""One outbound attempt: an INVITE to one destination, its timers, and its record."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from b2bua.calls.attempt_state import (
    ABANDONED,
    PENDING,
    AttemptEvent,
    AttemptState,
    next_state,
)
from b2bua.calls.endpoints import Destination
from b2bua.calls.failover import SwitchRules, Timer
from b2bua.calls.liveness import outbound_headers
from b2bua.sip.dialog import Dialog, new_tag
from b2bua.sip.message import Response
from b2bua.sip.transaction import TIMER_64T1, ClientTransaction, TimerHandle

if TYPE_CHECKING:
    from b2bua.calls.call import Call

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, MESSAGE, NOTIFY"


class Attempt:
    """The vendor (or phone) leg of a call while it is being set up, and after."""

    def __init__(self, call: Call, seq: int, destination: Destination,
                 rules: SwitchRules, target: str | None = None) -> None:
        # No reference back to the call: call -> attempt only, so a finished call is
        # freed by reference counting (b2bua/collector.py). The call is handed to start().
        self.switchboard = call.switchboard
        self.seq = seq
        self.destination = destination
        self.rules = rules
        self.target = target  # "host:port" it went to; None: none found (DNS failure)
        self.note = ""  # why it was never sent (a DNS failure)
        self.dialog: Dialog | None = None
        self.txn: ClientTransaction | None = None
        self.started_at = time.time()
        self.first_provisional_at: float | None = None
        self.first_provisional: int | None = None
        self.final_code: int | None = None
        self.outcome = "pending"
        self.ended_at: float | None = None
        self.state = AttemptState.NEW  # the INVITE exchange (attempt_state.py)
        self.open = False  # counted against the destination's capacity
        self.timer: Timer | None = None
        self._timer_handle: TimerHandle | None = None
        self._ack: bytes | None = None
        self.caller_sent = ""
        self.callee_sent = ""

    def _advance(self, event: AttemptEvent) -> AttemptState:
        """Move to the state the table gives; the state left."""
        before, self.state = self.state, next_state(self.state, event)
        return before

    @property
    def abandoned(self) -> bool:
        """Given up (a CANCEL sent, or waiting for the first provisional to send it)."""
        return self.state in ABANDONED

    @property
    def gateway_name(self) -> str | None:
        gw = self.destination.gateway
        return gw.name if gw is not None else None

    # -- sending ---------------------------------------------------------------------------

    def start(self, call: Call, on_response: Callable[[Response], None],
              on_timeout: Callable[[], None]) -> None:
        stack = call.switchboard.stack
        dest = self.destination
        display = call.invite.from_.display
        caller = dest.caller if dest.caller is not None else call.caller_routed
        from_uri = f"<sip:{caller}@{stack.advertised_host}>"
        if display:
            from_uri = f'"{display}" {from_uri}'
        self.dialog = Dialog(
            call_id=stack.new_call_id(),
            local_tag=new_tag(),
            local_uri=from_uri,
            remote_uri=dest.to_uri,
            remote_target=dest.request_uri,
            peer=dest.peer,
            via_host=stack.sent_by,
            contact=stack.contact(dest.peer.transport),
            pinned=dest.pinned,
            route_set=list(dest.route),
        )
        extra = [("Allow", ALLOW), *outbound_headers(call.switchboard.params)]
        if dest.pai is not None:
            extra.append(("P-Asserted-Identity", f"<sip:{dest.pai}@{stack.advertised_host}>"))
        request = self.dialog.create_request(
            "INVITE", call.offer_body(dest), call.invite.get("Content-Type"), cseq=1,
            extra=extra,
        )
        self.caller_sent = caller
        self.callee_sent = request.ruri.user or ""
        max_forwards = call.invite.max_forwards
        request.set("Max-Forwards", str(70 if max_forwards is None else max_forwards - 1))
        self._advance(AttemptEvent.SEND)
        self.open = True
        call.switchboard.leg_started(dest)
        call.switchboard.register_attempt(self.dialog.call_id, call)
        self.txn = stack.client_transaction(
            request, dest.peer, on_response, on_timeout,
            timeout=self.rules.invite_timeout,
            resend=call.switchboard.params["SS_SIP_RESEND_INTERVAL"],
        )

    def cancel(self) -> None:
        """Abandon the attempt: CANCEL once a provisional came, else as soon as one does
        (RFC 3261 9.1). Nothing to do once the INVITE had its final response."""
        self.disarm()
        if self.state not in PENDING:
            return
        before = self._advance(AttemptEvent.ABANDON)
        if before == AttemptState.PROCEEDING:
            self.send_cancel()
        if before not in ABANDONED and self.open:
            # A destination that answers neither the CANCEL nor the INVITE must not hold
            # its capacity for ever.
            self.switchboard.timers.call_later(TIMER_64T1, self.close)

    def send_cancel(self) -> None:
        """CANCEL the INVITE (built by its transaction); nothing once its final response
        came."""
        cancel = self.txn.cancel_request() if self.txn is not None else None
        if cancel is None:
            return
        self.switchboard.stack.client_transaction(cancel, self.destination.peer,
                                            lambda _r: None, lambda: None)

    def ack(self, body: bytes = b"", content_type: str | None = None) -> None:
        assert self.dialog is not None
        ack = self.dialog.create_request("ACK", body, content_type, cseq=1)
        self._ack = ack.to_bytes()
        self.switchboard.stack.send(self._ack, self.dialog.next_peer())

    def re_ack(self) -> None:
        """Our ACK was lost and the 2xx came again."""
        if self._ack is not None and self.dialog is not None:
            self.switchboard.stack.send(self._ack, self.dialog.next_peer())

    def bye(self) -> None:
        if self.dialog is None or self.dialog.remote_tag is None:
            return
        self._advance(AttemptEvent.BYE)
        request = self.dialog.create_request("BYE")
        self.switchboard.stack.client_transaction(request, self.dialog.next_peer(),
                                                 lambda _r: None, lambda: None)
        self.close()

    # -- timers ----------------------------------------------------------------------------

    def arm(self, timer: Timer, on_expiry: Callable[[Attempt, Timer], None]) -> None:
        self.disarm()
        self.timer = timer
        self._timer_handle = self.switchboard.timers.call_later(
            self.rules.timers[timer], lambda: on_expiry(self, timer))

    def disarm(self) -> None:
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
        self.timer = None

    # -- bookkeeping -----------------------------------------------------------------------

    def provisional(self, status: int) -> bool:
        """A 1xx; True when the CANCEL that waited for it is to be sent now."""
        before = self._advance(AttemptEvent.PROVISIONAL)
        if status != 100 and self.first_provisional is None:
            self.first_provisional = status
            self.first_provisional_at = time.time()
        return before == AttemptState.CANCEL_WAIT

    def answered(self, status: int) -> None:
        self._advance(AttemptEvent.ANSWER)
        self.finish("answered", status)

    def failed(self, status: int) -> None:
        self._advance(AttemptEvent.FAILURE)
        self.finish("failed", status)
        self.close()

    def timed_out(self) -> None:
        self._advance(AttemptEvent.TIMEOUT)
        self.finish("invite_timeout")
        self.close()

    def finish(self, outcome: str, code: int | None = None) -> None:
        """Record how the attempt ended (the first verdict stands)."""
        if self.outcome == "pending":
            self.outcome = outcome
            self.final_code = code if code is not None else self.final_code
            self.ended_at = time.time()
        self.disarm()

    def close(self) -> None:
        """The leg no longer counts against the destination's capacity."""
        self.disarm()
        if self.open:
            self.open = False
            self.switchboard.leg_ended(self.destination)

    def record(self) -> dict[str, Any]:
        gw = self.destination.gateway
        end = self.ended_at or time.time()
        return {
            "seq": self.seq,
            "routing_gateway_id": gw.id if gw is not None else None,
            "routing_gateway": gw.name if gw is not None else None,
            "call_id": self.dialog.call_id if self.dialog is not None else None,
            "start_at": self.started_at,
            "first_provisional_at": self.first_provisional_at,
            "first_provisional": self.first_provisional,
            "final_code": self.final_code,
            "outcome": self.outcome,
            "duration": round(end - self.started_at, 3),
            "target": self.target,
        }
