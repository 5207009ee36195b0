"""One outbound attempt: an INVITE to one destination, its state, and its record.

The attempt keeps what it knows; the call (``call.py``) turns what it decides into
actions. It holds no reference to the call, so a finished call is freed by reference
counting (``b2bua/collector.py``).
"""

from __future__ import annotations

from typing import Any

from b2bua.calls.attempt_state import (
    ABANDONED,
    PENDING,
    AttemptEvent,
    AttemptState,
    next_state,
)
from b2bua.calls.endpoints import Destination
from b2bua.calls.failover import SwitchRules, Timer
from b2bua.sip.dialog import Dialog
from b2bua.sip.peer import Peer

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, MESSAGE, NOTIFY"


class Attempt:
    """The vendor (or phone) leg of a call while it is being set up, and after."""

    def __init__(self, seq: int, destination: Destination, rules: SwitchRules, now: float,
                 target: str | None = None) -> None:
        self.seq = seq
        self.destination = destination
        self.rules = rules
        self.target = target  # "host:port" it went to; None: none found (DNS failure)
        self.note = ""  # why it was never sent (a DNS failure)
        self.dialog: Dialog | None = None
        self.token = 0  # its INVITE's, in the call's Transact actions
        self.started_at = now
        self.first_provisional_at: float | None = None
        self.first_provisional: int | None = None
        self.final_code: int | None = None
        self.outcome = "pending"
        self.ended_at: float | None = None
        self.state = AttemptState.NEW  # the INVITE exchange (attempt_state.py)
        self.open = False  # counted against the destination's capacity
        self.timer: Timer | None = None  # the switching-rule timer running, if any
        self.ack_bytes: bytes | None = None  # kept to ACK a retransmitted 2xx again
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
    def pending(self) -> bool:
        """The INVITE exchange is open: a final response may still come."""
        return self.state in PENDING

    @property
    def peer(self) -> Peer:
        """Where the leg's next request goes."""
        return self.dialog.next_peer() if self.dialog is not None else self.destination.peer

    @property
    def gateway_name(self) -> str | None:
        gw = self.destination.gateway
        return gw.name if gw is not None else None

    @property
    def timer_name(self) -> str:
        return f"attempt-{self.seq}"

    @property
    def release_name(self) -> str:
        return f"release-{self.seq}"

    # -- the INVITE exchange ---------------------------------------------------------------

    def sent(self, token: int) -> None:
        self.token = token
        self._advance(AttemptEvent.SEND)
        self.open = True

    def abandon(self) -> AttemptState:
        """Given up; the state before (a CANCEL goes out now if it was PROCEEDING, on the
        first provisional if it was CALLING)."""
        return self._advance(AttemptEvent.ABANDON)

    def provisional(self, status: int, now: float) -> bool:
        """A 1xx; True when the CANCEL that waited for it is to be sent now."""
        before = self._advance(AttemptEvent.PROVISIONAL)
        if status != 100 and self.first_provisional is None:
            self.first_provisional = status
            self.first_provisional_at = now
        return before == AttemptState.CANCEL_WAIT

    def answered(self, status: int, now: float) -> None:
        self._advance(AttemptEvent.ANSWER)
        self.finish("answered", now, status)

    def failed(self, status: int, now: float) -> None:
        self._advance(AttemptEvent.FAILURE)
        self.finish("failed", now, status)

    def timed_out(self, now: float) -> None:
        self._advance(AttemptEvent.TIMEOUT)
        self.finish("invite_timeout", now)

    def hung_up(self) -> None:
        self._advance(AttemptEvent.BYE)

    def finish(self, outcome: str, now: float, code: int | None = None) -> None:
        """Record how the attempt ended (the first verdict stands)."""
        if self.outcome == "pending":
            self.outcome = outcome
            self.final_code = code if code is not None else self.final_code
            self.ended_at = now

    def record(self, now: float) -> dict[str, Any]:
        gw = self.destination.gateway
        end = self.ended_at or now
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
