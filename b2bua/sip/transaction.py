"""RFC 3261 section 17 transactions (with RFC 6026's Accepted state for INVITE servers).

The state machines own no sockets and no clock: each transaction gets a ``send``
function bound to its peer and a ``Timers`` object (the asyncio loop in the engine, a
fake clock in tests). Over a reliable transport (TCP) retransmission timers are not
started and the wait timers are zero, as RFC 3261 17.1.1.2 and 17.2.1 say.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Protocol

from b2bua.sip.errors import SipParseError
from b2bua.sip.message import Request, Response

T1 = 0.5
T2 = 4.0
T4 = 5.0
TIMER_64T1 = 64 * T1

BRANCH_MAGIC = "z9hG4bK"


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Timers(Protocol):
    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle: ...


Send = Callable[[bytes], None]


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(8)


class State(Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    ACCEPTED = "accepted"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


ServerKey = tuple[str, str, str]
ClientKey = tuple[str, str]


def server_key(request: Request) -> ServerKey:
    """Match key of RFC 3261 17.2.3; an ACK or CANCEL names the INVITE's branch."""
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    sent_by = f"{via.host}:{via.port or ''}"
    if branch.startswith(BRANCH_MAGIC):
        return (branch, sent_by, method)
    # RFC 2543 peers: no usable branch; fall back to the request's identity.
    cseq = request.cseq
    return (f"{request.call_id}|{cseq.number}|{request.from_.tag}", sent_by, method)


def client_key(branch: str, method: str) -> ClientKey:
    return (branch, "INVITE" if method == "ACK" else method)


class _Transaction:
    def __init__(self, layer: TransactionLayer, send: Send, reliable: bool) -> None:
        self.layer = layer
        self._send = send
        self.reliable = reliable
        self.state = State.TRYING
        self._timers: list[TimerHandle] = []

    def _later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        handle = self.layer.timers.call_later(delay, callback)
        self._timers.append(handle)
        return handle

    def _cancel_timers(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    def _terminate(self) -> None:
        self._cancel_timers()
        self.state = State.TERMINATED
        self.layer.forget(self)


class ServerTransaction(_Transaction):
    """INVITE and non-INVITE server transactions (RFC 3261 17.2, RFC 6026)."""

    def __init__(self, layer: TransactionLayer, request: Request, send: Send,
                 reliable: bool) -> None:
        super().__init__(layer, send, reliable)
        # Kept until the final response; then only its key and the response's bytes are
        # needed, and the transaction lingers 32 s (Timers L and J) at call rate.
        self.request: Request | None = request
        self.key = server_key(request)
        self.is_invite = request.method == "INVITE"
        self.state = State.PROCEEDING if self.is_invite else State.TRYING
        self._last_bytes = b""
        self.on_ack_timeout: Callable[[], None] | None = None
        # An INVITE's 2xx is sent again (T1 doubling to T2, unreliable transports only)
        # until the TU, which receives its ACK, calls confirm(); unconfirmed at Timer L,
        # on_no_ack is called (the TU ends the dialog).
        self.on_no_ack: Callable[[], None] | None = None
        self._confirmed = False
        self._next_2xx: TimerHandle | None = None

    def respond(self, response: Response) -> None:
        if self.state in (State.COMPLETED, State.CONFIRMED, State.TERMINATED):
            return
        if self.state == State.ACCEPTED:
            return  # the 2xx is retransmitted here, from _last_bytes
        self._last_bytes = response.to_bytes()
        self._send(self._last_bytes)
        status = response.status
        if status < 200:
            if not self.is_invite:
                self.state = State.PROCEEDING
            return
        self.request = None
        if self.is_invite:
            if status < 300:
                self.state = State.ACCEPTED
                if not self.reliable:
                    self._next_2xx = self._later(T1, lambda: self._retransmit_2xx(T1))
                self._later(TIMER_64T1, self._accepted_end)  # Timer L
            else:
                self.state = State.COMPLETED
                if not self.reliable:
                    self._later(T1, lambda: self._retransmit_final(T1))  # Timer G
                self._later(TIMER_64T1, self._ack_timeout)  # Timer H
        else:
            self.state = State.COMPLETED
            self._later(0 if self.reliable else TIMER_64T1, self._terminate)  # Timer J

    def _retransmit_final(self, interval: float) -> None:
        if self.state != State.COMPLETED:
            return
        self._send(self._last_bytes)
        nxt = min(interval * 2, T2)
        self._later(nxt, lambda: self._retransmit_final(nxt))

    def _retransmit_2xx(self, interval: float) -> None:
        """RFC 3261 13.3.1.4: the 2xx again at T1, 2*T1... up to T2, until its ACK."""
        if self.state != State.ACCEPTED or self._confirmed:
            return
        self._send(self._last_bytes)
        nxt = min(interval * 2, T2)
        self._next_2xx = self._later(nxt, lambda: self._retransmit_2xx(nxt))

    def confirm(self) -> None:
        """The 2xx's ACK came (or the dialog ended meanwhile): stop sending it. Retransmitted
        INVITEs are still absorbed until Timer L."""
        self._confirmed = True
        self.on_no_ack = None  # it holds the call: let it go now, not at Timer L
        if self._next_2xx is not None:
            self._next_2xx.cancel()
            self._next_2xx = None

    def _accepted_end(self) -> None:
        on_no_ack, self.on_no_ack = self.on_no_ack, None
        self._terminate()
        if not self._confirmed and on_no_ack is not None:
            on_no_ack()

    def _ack_timeout(self) -> None:
        if self.state == State.COMPLETED:
            if self.on_ack_timeout is not None:
                self.on_ack_timeout()
            self._terminate()

    def on_retransmission(self, request: Request) -> None:
        """A retransmitted request or the ACK of a non-2xx final response."""
        if request.method == "ACK":
            if self.state == State.COMPLETED:
                self._cancel_timers()
                self.state = State.CONFIRMED
                self._later(0 if self.reliable else T4, self._terminate)  # Timer I
            return
        if self.state in (State.PROCEEDING, State.COMPLETED) and self._last_bytes:
            self._send(self._last_bytes)


ResponseHandler = Callable[[Response], None]
TimeoutHandler = Callable[[], None]


class ClientTransaction(_Transaction):
    """INVITE and non-INVITE client transactions (RFC 3261 17.1).

    The INVITE client retransmits on ``resend`` (the SS_SIP_RESEND_INTERVAL
    schedule: the gaps between sends) and gives up after ``timeout`` seconds without
    any response (Timer B, the gateway's INVITE timeout).
    """

    def __init__(
        self,
        layer: TransactionLayer,
        request: Request,
        send: Send,
        reliable: bool,
        on_response: ResponseHandler,
        on_timeout: TimeoutHandler,
        timeout: float = TIMER_64T1,
        resend: Sequence[float] | None = None,
    ) -> None:
        super().__init__(layer, send, reliable)
        self.request: Request | None = request  # let go with the final response
        branch = request.top_via.branch
        if branch is None:
            raise SipParseError("client request without a branch")
        self.branch = branch
        self.is_invite = request.method == "INVITE"
        self.key = client_key(branch, request.method)
        self.on_response = on_response
        self.on_timeout = on_timeout
        self.timeout = timeout
        self.resend = list(resend) if resend is not None else None
        self.sends = 0
        self._bytes = b""
        self._ack_bytes = b""
        self.state = State.CALLING if self.is_invite else State.TRYING

    def start(self) -> None:
        if self.request is None:
            raise RuntimeError("a client transaction starts once, before its final response")
        self._bytes = self.request.to_bytes()
        self._transmit()
        if not self.reliable:
            if self.is_invite:
                self._schedule_invite_resend(0)
            else:
                self._later(T1, lambda: self._retransmit_non_invite(T1))  # Timer E
        self._later(self.timeout, self._timer_b_or_f)

    def _transmit(self) -> None:
        self.sends += 1
        self._send(self._bytes)

    def _schedule_invite_resend(self, index: int) -> None:
        schedule = self.resend if self.resend is not None else _doubling_schedule()
        if index >= len(schedule):
            return

        def fire() -> None:
            if self.state == State.CALLING:
                self._transmit()
                self._schedule_invite_resend(index + 1)

        self._later(schedule[index], fire)  # Timer A

    def _retransmit_non_invite(self, interval: float) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return
        self._transmit()
        nxt = T2 if self.state == State.PROCEEDING else min(interval * 2, T2)
        self._later(nxt, lambda: self._retransmit_non_invite(nxt))

    def _timer_b_or_f(self) -> None:
        if self.state in (State.CALLING, State.TRYING) or (
            not self.is_invite and self.state == State.PROCEEDING
        ):
            self._terminate()
            self.on_timeout()

    def receive(self, response: Response) -> None:
        status = response.status
        if self.state == State.TERMINATED:
            return
        if self.is_invite:
            self._receive_invite(response, status)
        else:
            self._receive_non_invite(response, status)

    def _receive_invite(self, response: Response, status: int) -> None:
        if self.state in (State.CALLING, State.PROCEEDING):
            if self.state == State.CALLING:
                self._cancel_timers()  # Timers A and B
            if status < 200:
                self.state = State.PROCEEDING
                self.on_response(response)
            elif status < 300:
                # The TU ACKs a 2xx itself; retransmitted 2xx reach it through the dialog.
                self._terminate()
                self._deliver_final(response)
            else:
                self.state = State.COMPLETED
                self._ack_bytes = self._build_ack(response)
                self._send(self._ack_bytes)
                self._later(0 if self.reliable else 32.0, self._terminate)  # Timer D
                self._deliver_final(response)
        elif self.state == State.COMPLETED and status >= 300 and self._ack_bytes:
            self._send(self._ack_bytes)

    def _receive_non_invite(self, response: Response, status: int) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return
        if status < 200:
            self.state = State.PROCEEDING
            self.on_response(response)
            return
        self._cancel_timers()
        self.state = State.COMPLETED
        self._later(0 if self.reliable else T4, self._terminate)  # Timer K
        self._deliver_final(response)

    def _deliver_final(self, response: Response) -> None:
        """Hand the final response up, then let go of what only the exchange needed: the
        transaction lingers for its wait timer, and whatever it still references stays
        alive (and is walked by every garbage collection) until then."""
        on_response = self.on_response
        self.on_response = _ignore_response
        self.on_timeout = _ignore
        self._bytes = b""
        self.request = None
        on_response(response)

    def _build_ack(self, response: Response) -> bytes:
        """ACK of a non-2xx final response: same branch, To from the response (17.1.1.3)."""
        return self._same_branch("ACK", response.get("To") or "").to_bytes()

    def cancel_request(self) -> Request | None:
        """The CANCEL of this INVITE (RFC 3261 9.1); None once its final response came
        (nothing is left to cancel)."""
        if not self.is_invite or self.request is None:
            return None
        return self._same_branch("CANCEL", self.request.get("To") or "")

    def _same_branch(self, method: str, to: str) -> Request:
        """A request that shares the INVITE's branch (its ACK, its CANCEL): the INVITE's
        top Via, Route set, Request-URI, From, Call-ID and CSeq number."""
        req = self.request
        if req is None:  # built before the final response is handed up, never after
            raise RuntimeError(f"{method} built after the transaction let go of its request")
        headers: list[tuple[str, str]] = [("Via", req.get("Via") or "")]
        headers.extend(("Route", v) for v in req.get_all("Route"))
        headers += [
            ("Max-Forwards", "70"),
            ("From", req.get("From") or ""),
            ("To", to),
            ("Call-ID", req.call_id),
            ("CSeq", f"{req.cseq.number} {method}"),
        ]
        return Request(method, req.uri, headers)

    def cancel_timers(self) -> None:
        """Stop retransmitting (e.g. the attempt is abandoned and a CANCEL follows)."""
        self._cancel_timers()


def _ignore() -> None:
    return None


def _ignore_response(_response: Response) -> None:
    return None


def _doubling_schedule() -> list[float]:
    out, gap, total = [], T1, 0.0
    while total + gap < TIMER_64T1:
        out.append(gap)
        total += gap
        gap *= 2
    return out


class TransactionLayer:
    """Holds the live transactions and matches incoming messages to them."""

    def __init__(self, timers: Timers) -> None:
        self.timers = timers
        self.servers: dict[ServerKey, ServerTransaction] = {}
        self.clients: dict[ClientKey, ClientTransaction] = {}

    def match_request(self, request: Request) -> ServerTransaction | None:
        txn = self.servers.get(server_key(request))
        if txn is not None and request.method == "ACK" and txn.state == State.ACCEPTED:
            # The ACK of a 2xx belongs to the application (RFC 6026); an RFC 2543 peer's
            # ACK carries the INVITE's key, so it must not be absorbed here.
            return None
        return txn

    def match_response(self, response: Response) -> ClientTransaction | None:
        branch = response.top_via.branch
        if branch is None:
            return None
        return self.clients.get(client_key(branch, response.cseq.method))

    def new_server(self, request: Request, send: Send, reliable: bool) -> ServerTransaction:
        txn = ServerTransaction(self, request, send, reliable)
        self.servers[txn.key] = txn
        return txn

    def new_client(
        self,
        request: Request,
        send: Send,
        reliable: bool,
        on_response: ResponseHandler,
        on_timeout: TimeoutHandler,
        timeout: float = TIMER_64T1,
        resend: Sequence[float] | None = None,
    ) -> ClientTransaction:
        txn = ClientTransaction(self, request, send, reliable, on_response, on_timeout,
                                timeout, resend)
        self.clients[txn.key] = txn
        txn.start()
        return txn

    def find_invite_server(self, cancel: Request) -> ServerTransaction | None:
        """The INVITE server transaction a CANCEL refers to (RFC 3261 9.2)."""
        key = server_key(cancel)
        return self.servers.get((key[0], key[1], "INVITE"))

    def forget(self, txn: _Transaction) -> None:
        if isinstance(txn, ServerTransaction):
            if self.servers.get(txn.key) is txn:
                del self.servers[txn.key]
        elif isinstance(txn, ClientTransaction) and self.clients.get(txn.key) is txn:
            del self.clients[txn.key]
