"""RFC 3261 section 17 transaction state machines driven by a fake clock."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from b2bua.sip.errors import SipParseError
from b2bua.sip.message import Request, Response, make_response
from b2bua.sip.parser import parse_message
from b2bua.sip.peer import Peer
from b2bua.sip.stack import SipStack
from b2bua.sip.transaction import (
    T1,
    T2,
    T4,
    TIMER_64T1,
    ClientTransaction,
    ServerTransaction,
    State,
    TransactionLayer,
    client_key,
    server_key,
)

# -- fake clock -------------------------------------------------------------------------------


class FakeHandle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """``call_later`` on a priority queue; ``advance`` fires due callbacks in time order.

    Callbacks run with ``now`` set to their due time and may schedule more callbacks,
    which fire in the same ``advance`` when they fall due before its end.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self._seq = itertools.count()
        self._queue: list[tuple[float, int, FakeHandle, Callable[[], None]]] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeHandle:
        assert delay >= 0, delay
        handle = FakeHandle()
        heapq.heappush(self._queue, (self.now + delay, next(self._seq), handle, callback))
        return handle

    def advance(self, seconds: float) -> None:
        target = self.now + seconds
        while self._queue and self._queue[0][0] <= target:
            when, _, handle, callback = heapq.heappop(self._queue)
            self.now = when
            if not handle.cancelled:
                callback()
        self.now = target

    def advance_to(self, when: float) -> None:
        assert when >= self.now
        self.advance(when - self.now)

    @property
    def pending(self) -> int:
        return sum(1 for _, _, handle, _ in self._queue if not handle.cancelled)


def test_fake_clock_orders_callbacks_and_runs_chained_ones() -> None:
    clock = FakeClock()
    fired: list[tuple[str, float]] = []
    clock.call_later(2.0, lambda: fired.append(("b", clock.now)))
    clock.call_later(1.0, lambda: fired.append(("a", clock.now)))
    clock.call_later(1.0, lambda: fired.append(("a2", clock.now)))
    cancelled = clock.call_later(1.5, lambda: fired.append(("x", clock.now)))
    cancelled.cancel()

    def chain() -> None:
        fired.append(("c", clock.now))
        clock.call_later(0.5, lambda: fired.append(("d", clock.now)))

    clock.call_later(2.5, chain)
    clock.advance(2.9)
    assert fired == [("a", 1.0), ("a2", 1.0), ("b", 2.0), ("c", 2.5)]
    assert clock.now == 2.9
    clock.advance(0.1)
    assert fired[-1] == ("d", 3.0)
    assert clock.pending == 0


# -- helpers ----------------------------------------------------------------------------------


def wire(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


@dataclass
class Wire:
    """A ``send`` callable recording what went out and when."""

    clock: FakeClock
    sent: list[tuple[float, bytes]] = field(default_factory=list)

    def __call__(self, data: bytes) -> None:
        self.sent.append((self.clock.now, data))

    @property
    def times(self) -> list[float]:
        return [when for when, _ in self.sent]

    def messages(self) -> list[Request | Response]:
        return [parse_message(data) for _, data in self.sent]


@dataclass
class Upper:
    """The TU side of a client transaction."""

    responses: list[Response] = field(default_factory=list)
    timeouts: list[float] = field(default_factory=list)
    clock: FakeClock | None = None

    def on_response(self, response: Response) -> None:
        self.responses.append(response)

    def on_timeout(self) -> None:
        self.timeouts.append(self.clock.now if self.clock is not None else -1.0)

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]


def make_request(
    method: str = "INVITE",
    branch: str | None = "z9hG4bKclient01",
    *,
    cseq: int = 1,
    sent_by: str = "10.0.0.5:5060",
    transport: str = "UDP",
    call_id: str = "call-1@10.0.0.5",
    from_tag: str = "caller-tag",
    to_tag: str | None = None,
    routes: tuple[str, ...] = (),
) -> Request:
    via = f"SIP/2.0/{transport} {sent_by}"
    if branch is not None:
        via += f";branch={branch}"
    to = "<sip:15551234@203.0.113.9>" + (f";tag={to_tag}" if to_tag else "")
    route_lines = "".join(f"Route: {r}\n" for r in routes)
    text = (
        f"{method} sip:15551234@203.0.113.9:5060 SIP/2.0\n"
        f"Via: {via}\n"
        f"{route_lines}"
        "Max-Forwards: 70\n"
        f"From: \"Caller\" <sip:caller@10.0.0.5>;tag={from_tag}\n"
        f"To: {to}\n"
        f"Call-ID: {call_id}\n"
        f"CSeq: {cseq} {method}\n"
        "Contact: <sip:caller@10.0.0.5:5060>\n"
        "\n"
    )
    return _as_request(parse_message(wire(text)))


def _as_request(message: Request | Response) -> Request:
    assert isinstance(message, Request)
    return message


def _as_response(message: Request | Response) -> Response:
    assert isinstance(message, Response)
    return message


def respond(request: Request, status: int, to_tag: str | None = "callee-tag") -> Response:
    """A response as it would arrive from the wire."""
    return _as_response(parse_message(make_response(request, status, to_tag=to_tag).to_bytes()))


def ack_for(invite: Request, response: Response) -> Request:
    """The ACK a UAC sends for a non-2xx final response (same branch, To of the response)."""
    headers = [
        ("Via", invite.get("Via") or ""),
        ("Max-Forwards", "70"),
        ("From", invite.get("From") or ""),
        ("To", response.get("To") or ""),
        ("Call-ID", invite.call_id),
        ("CSeq", f"{invite.cseq.number} ACK"),
    ]
    return _as_request(parse_message(Request("ACK", invite.uri, headers).to_bytes()))


def client(
    method: str = "INVITE",
    *,
    reliable: bool = False,
    timeout: float = TIMER_64T1,
    resend: list[float] | None = None,
    routes: tuple[str, ...] = (),
) -> tuple[FakeClock, TransactionLayer, Wire, Upper, Request, ClientTransaction]:
    clock = FakeClock()
    layer = TransactionLayer(clock)
    out = Wire(clock)
    upper = Upper(clock=clock)
    request = make_request(method, transport="TCP" if reliable else "UDP", routes=routes)
    txn = layer.new_client(request, out, reliable, upper.on_response, upper.on_timeout,
                           timeout, resend)
    return clock, layer, out, upper, request, txn


def server(
    method: str = "INVITE", *, reliable: bool = False, branch: str | None = "z9hG4bKsrv01",
) -> tuple[FakeClock, TransactionLayer, Wire, Request, ServerTransaction]:
    clock = FakeClock()
    layer = TransactionLayer(clock)
    out = Wire(clock)
    request = make_request(method, branch, transport="TCP" if reliable else "UDP")
    txn = layer.new_server(request, out, reliable)
    return clock, layer, out, request, txn


def state(txn: ClientTransaction | ServerTransaction) -> State:
    """The state, read through a call so that mypy does not narrow it between events."""
    return txn.state


# -- INVITE client ----------------------------------------------------------------------------

VOS_RESEND = [0.5, 1.0, 2.0, 4.0, 4.0]


def test_invite_client_retransmits_on_the_resend_schedule_then_stops() -> None:
    clock, layer, out, upper, request, txn = client(resend=VOS_RESEND, timeout=60.0)
    assert out.times == [0.0]
    clock.advance_to(59.0)
    assert out.times == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5]
    assert all(data == request.to_bytes() for _, data in out.sent)
    assert txn.sends == 6
    assert state(txn) == State.CALLING
    assert upper.timeouts == []
    assert layer.clients[txn.key] is txn


def test_invite_client_default_schedule_doubles_from_t1() -> None:
    clock, _layer, out, _upper, _request, _txn = client()
    clock.advance_to(TIMER_64T1 - 0.01)
    assert out.times == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]


def test_invite_client_timer_b_fires_on_timeout_without_response() -> None:
    clock, layer, out, upper, _request, txn = client(resend=VOS_RESEND, timeout=20.0)
    clock.advance_to(19.99)
    assert upper.timeouts == []
    clock.advance_to(20.0)
    assert upper.timeouts == [20.0]
    assert state(txn) == State.TERMINATED
    assert txn.key not in layer.clients
    clock.advance(100.0)
    assert upper.timeouts == [20.0]
    assert len(out.sent) == 6
    assert upper.responses == []


def test_invite_client_100_stops_retransmissions_and_timer_b() -> None:
    clock, layer, out, upper, request, txn = client(resend=VOS_RESEND, timeout=20.0)
    clock.advance_to(1.0)
    assert out.times == [0.0, 0.5]
    trying = respond(request, 100, to_tag=None)
    match = layer.match_response(trying)
    assert match is txn
    match.receive(trying)
    assert state(txn) == State.PROCEEDING
    assert upper.statuses == [100]
    clock.advance(120.0)
    assert out.times == [0.0, 0.5]
    assert upper.timeouts == []
    assert layer.clients[txn.key] is txn


def test_invite_client_passes_180_up() -> None:
    _clock, layer, _out, upper, request, txn = client(resend=VOS_RESEND)
    ringing = respond(request, 180)
    assert layer.match_response(ringing) is txn
    txn.receive(ringing)
    txn.receive(ringing)  # provisional retransmissions go to the TU too
    assert upper.responses == [ringing, ringing]
    assert state(txn) == State.PROCEEDING


@pytest.mark.parametrize("provisional", [False, True])
def test_invite_client_2xx_terminates_and_is_passed_up(provisional: bool) -> None:
    clock, layer, out, upper, request, txn = client(resend=VOS_RESEND, timeout=20.0)
    if provisional:
        txn.receive(respond(request, 183))
    ok = respond(request, 200)
    txn.receive(ok)
    assert upper.responses[-1] is ok
    assert state(txn) == State.TERMINATED
    assert txn.key not in layer.clients
    assert layer.match_response(ok) is None
    clock.advance(60.0)
    assert out.times == [0.0]  # the TU ACKs a 2xx, the transaction sends nothing
    assert upper.timeouts == []


def test_invite_client_acks_486_and_absorbs_its_retransmission() -> None:
    clock, layer, out, upper, request, txn = client(resend=VOS_RESEND)
    clock.advance_to(0.7)
    busy = respond(request, 486, to_tag="busy-tag")
    layer_match = layer.match_response(busy)
    assert layer_match is txn
    txn.receive(busy)
    assert upper.responses == [busy]
    assert state(txn) == State.COMPLETED
    assert len(out.sent) == 3  # INVITE, one retransmission, the ACK

    ack = _as_request(out.messages()[-1])
    assert ack.method == "ACK"
    assert ack.uri == request.uri
    assert ack.top_via.branch == request.top_via.branch
    assert ack.to.tag == "busy-tag"
    assert ack.from_.tag == request.from_.tag
    assert ack.call_id == request.call_id
    assert (ack.cseq.number, ack.cseq.method) == (request.cseq.number, "ACK")

    txn.receive(respond(request, 486, to_tag="busy-tag"))
    assert len(out.sent) == 4
    assert out.sent[-1][1] == out.sent[-2][1]
    assert upper.statuses == [486]

    clock.advance(20.0)
    assert len(out.sent) == 4  # no INVITE retransmissions after the final response
    assert layer.clients[txn.key] is txn
    clock.advance(12.0)  # Timer D: 32 s on UDP
    assert state(txn) == State.TERMINATED
    assert txn.key not in layer.clients
    assert upper.timeouts == []


def test_invite_client_ack_copies_route_headers() -> None:
    routes = ("<sip:10.1.1.1;lr>", "<sip:10.1.1.2;lr>")
    _clock, _layer, out, _upper, request, txn = client(resend=VOS_RESEND, routes=routes)
    txn.receive(respond(request, 503))
    ack = _as_request(out.messages()[-1])
    assert ack.method == "ACK"
    assert ack.get_all("Route") == list(routes)


def test_invite_client_builds_its_cancel_until_the_final_response() -> None:
    """RFC 3261 9.1: the INVITE's Request-URI, top Via (branch), Route set, From, To,
    Call-ID and CSeq number, method CANCEL; nothing to cancel after a final response."""
    routes = ("<sip:10.1.1.1;lr>",)
    _clock, _layer, _out, _upper, request, txn = client(resend=VOS_RESEND, routes=routes)
    txn.receive(respond(request, 180))
    built = txn.cancel_request()
    assert built is not None
    cancel = _as_request(parse_message(built.to_bytes()))
    assert cancel.method == "CANCEL" and cancel.uri == request.uri
    assert cancel.get_all("Via") == [request.get("Via")]
    assert cancel.top_via.branch == request.top_via.branch
    assert cancel.get_all("Route") == list(routes)
    for header in ("From", "To", "Call-ID"):
        assert cancel.get(header) == request.get(header)
    assert cancel.to.tag is None  # the INVITE's To, not the 180's
    assert (cancel.cseq.number, cancel.cseq.method) == (request.cseq.number, "CANCEL")
    txn.receive(respond(request, 487))
    assert txn.cancel_request() is None
    _clock, _layer, _out, _upper, _bye, bye_txn = client("BYE")
    assert bye_txn.cancel_request() is None  # only an INVITE is cancelled


def test_invite_client_over_tcp_never_retransmits() -> None:
    clock, layer, out, upper, request, txn = client(reliable=True, resend=VOS_RESEND,
                                                    timeout=20.0)
    clock.advance_to(19.0)
    assert out.times == [0.0]
    clock.advance_to(20.0)
    assert upper.timeouts == [20.0]
    assert txn.key not in layer.clients

    clock, layer, out, upper, request, txn = client(reliable=True, resend=VOS_RESEND)
    txn.receive(respond(request, 486))
    assert [m.method for m in out.messages() if isinstance(m, Request)] == ["INVITE", "ACK"]
    clock.advance(0)  # Timer D is zero on a reliable transport
    assert state(txn) == State.TERMINATED
    assert txn.key not in layer.clients


# -- non-INVITE client ------------------------------------------------------------------------


def test_non_invite_client_timer_e_doubles_to_t2_and_timer_f_times_out() -> None:
    clock, layer, out, upper, request, txn = client("BYE")
    assert state(txn) == State.TRYING
    clock.advance_to(TIMER_64T1 - 0.01)
    assert out.times == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    gaps = [b - a for a, b in itertools.pairwise(out.times)]
    assert gaps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert max(gaps) == T2
    assert all(data == request.to_bytes() for _, data in out.sent)
    assert upper.timeouts == []
    clock.advance_to(TIMER_64T1)
    assert upper.timeouts == [TIMER_64T1]
    assert state(txn) == State.TERMINATED
    assert txn.key not in layer.clients
    clock.advance(30.0)
    assert len(out.sent) == 11


def test_non_invite_client_provisional_switches_to_t2_interval() -> None:
    clock, _layer, out, upper, request, txn = client("OPTIONS")
    clock.advance_to(0.6)
    txn.receive(respond(request, 100, to_tag=None))
    assert state(txn) == State.PROCEEDING
    assert upper.statuses == [100]
    clock.advance_to(10.0)
    # The Timer E due at 1.5 was armed before the 100; after it the gap is T2.
    assert out.times == [0.0, 0.5, 1.5, 5.5, 9.5]
    clock.advance_to(TIMER_64T1)
    assert upper.timeouts == [TIMER_64T1]  # Timer F also runs in Proceeding


def test_non_invite_client_final_response_stops_it_and_timer_k_removes_it() -> None:
    clock, layer, out, upper, request, txn = client("BYE")
    clock.advance_to(2.0)
    ok = respond(request, 200)
    assert layer.match_response(ok) is txn
    txn.receive(ok)
    assert upper.responses == [ok]
    assert state(txn) == State.COMPLETED
    txn.receive(respond(request, 200))  # retransmitted final: absorbed
    assert upper.statuses == [200]
    sends = len(out.sent)
    clock.advance(T4 - 0.01)
    assert layer.clients[txn.key] is txn
    clock.advance(0.01)  # Timer K
    assert state(txn) == State.TERMINATED
    assert txn.key not in layer.clients
    clock.advance(60.0)
    assert len(out.sent) == sends == 3
    assert upper.timeouts == []


def test_non_invite_client_over_tcp() -> None:
    clock, layer, out, upper, request, txn = client("BYE", reliable=True)
    clock.advance_to(31.0)
    assert out.times == [0.0]
    txn.receive(respond(request, 200))
    clock.advance(0)  # Timer K is zero on a reliable transport
    assert txn.key not in layer.clients
    assert upper.statuses == [200]


# -- INVITE server ----------------------------------------------------------------------------


def test_invite_server_retransmitted_invite_gets_last_provisional() -> None:
    _clock, layer, out, request, txn = server()
    assert state(txn) == State.PROCEEDING
    retransmission = make_request("INVITE", "z9hG4bKsrv01")
    assert layer.match_request(retransmission) is txn
    txn.on_retransmission(retransmission)
    assert out.sent == []  # nothing to repeat yet

    txn.respond(respond(request, 100, to_tag=None))
    ringing = respond(request, 180)
    txn.respond(ringing)
    txn.on_retransmission(retransmission)
    assert len(out.sent) == 3
    assert out.sent[-1][1] == ringing.to_bytes()
    assert _as_response(out.messages()[-1]).status == 180


def test_invite_server_486_timer_g_until_ack_then_confirmed() -> None:
    clock, layer, out, request, txn = server()
    calls: list[float] = []
    txn.on_ack_timeout = lambda: calls.append(clock.now)
    busy = respond(request, 486)
    txn.respond(busy)
    assert state(txn) == State.COMPLETED
    clock.advance_to(12.0)
    assert out.times == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5]
    assert all(data == busy.to_bytes() for _, data in out.sent)

    ack = ack_for(request, busy)
    assert server_key(ack) == txn.key
    assert layer.match_request(ack) is txn
    txn.on_retransmission(ack)
    assert state(txn) == State.CONFIRMED
    txn.respond(respond(request, 500))  # nothing is sent once the final response went out
    txn.on_retransmission(make_request("INVITE", "z9hG4bKsrv01"))  # absorbed in Confirmed
    clock.advance(T4 - 0.01)
    assert len(out.sent) == 6
    assert layer.servers[txn.key] is txn
    clock.advance(0.01)  # Timer I
    assert state(txn) == State.TERMINATED
    assert txn.key not in layer.servers
    clock.advance(60.0)
    assert len(out.sent) == 6
    assert calls == []


def test_invite_server_timer_g_caps_at_t2_and_timer_h_reports_missing_ack() -> None:
    clock, layer, out, request, txn = server()
    calls: list[float] = []
    txn.on_ack_timeout = lambda: calls.append(clock.now)
    txn.respond(respond(request, 486))
    clock.advance_to(TIMER_64T1 - 0.01)
    gaps = [b - a for a, b in itertools.pairwise(out.times)]
    assert gaps[:4] == [T1, 2 * T1, 4 * T1, T2]
    assert set(gaps[3:]) == {T2}
    assert out.times[-1] == 31.5
    assert calls == []
    clock.advance_to(TIMER_64T1)  # Timer H
    assert calls == [TIMER_64T1]
    assert state(txn) == State.TERMINATED
    assert txn.key not in layer.servers
    sends = len(out.sent)
    clock.advance(60.0)
    assert len(out.sent) == sends


def test_invite_server_retransmitted_invite_in_completed_resends_final() -> None:
    _clock, _layer, out, request, txn = server()
    txn.respond(respond(request, 486))
    txn.on_retransmission(make_request("INVITE", "z9hG4bKsrv01"))
    assert len(out.sent) == 2
    assert out.sent[0][1] == out.sent[1][1]


def test_invite_server_over_tcp_has_no_timer_g() -> None:
    clock, layer, out, request, txn = server(reliable=True)
    calls: list[float] = []
    txn.on_ack_timeout = lambda: calls.append(clock.now)
    txn.respond(respond(request, 486))
    clock.advance_to(TIMER_64T1)
    assert out.times == [0.0]
    assert calls == [TIMER_64T1]
    assert txn.key not in layer.servers


def test_invite_server_accepted_absorbs_retransmissions_and_times_out() -> None:
    clock, layer, out, request, txn = server()
    calls: list[float] = []
    txn.on_ack_timeout = lambda: calls.append(clock.now)
    ok = respond(request, 200)
    txn.respond(ok)
    assert state(txn) == State.ACCEPTED
    assert len(out.sent) == 1
    txn.confirm()  # its ACK came at once

    retransmission = make_request("INVITE", "z9hG4bKsrv01")
    clock.advance_to(5.0)
    assert layer.match_request(retransmission) is txn  # no new transaction
    txn.on_retransmission(retransmission)
    assert len(out.sent) == 1  # absorbed: neither resent nor passed up
    assert len(layer.servers) == 1

    txn.respond(ok)  # nothing more goes out once accepted
    txn.respond(respond(request, 486))
    assert len(out.sent) == 1

    clock.advance_to(TIMER_64T1 - 0.01)
    assert layer.servers[txn.key] is txn
    clock.advance_to(TIMER_64T1)  # Timer L
    assert state(txn) == State.TERMINATED
    assert txn.key not in layer.servers
    assert layer.match_request(retransmission) is None
    assert calls == []
    assert len(out.sent) == 1


def test_invite_server_sends_its_2xx_again_until_confirmed() -> None:
    """RFC 3261 13.3.1.4: the 2xx at T1, 2*T1, 4*T1... capped at T2, until its ACK."""
    clock, layer, out, request, txn = server()
    no_ack: list[float] = []
    txn.on_no_ack = lambda: no_ack.append(clock.now)
    ok = respond(request, 200)
    txn.respond(ok)
    clock.advance_to(12.0)
    assert out.times == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5]
    assert {data for _, data in out.sent} == {ok.to_bytes()}
    txn.confirm()
    assert txn.on_no_ack is None  # let go of the TU at once, not at Timer L
    assert clock.pending == 1  # the next retransmission is cancelled: Timer L alone
    clock.advance_to(TIMER_64T1 + 1)
    assert out.times[-1] == 11.5
    assert no_ack == []
    assert state(txn) == State.TERMINATED and txn.key not in layer.servers


@pytest.mark.parametrize("reliable", [False, True], ids=["udp", "tcp"])
def test_invite_server_2xx_never_acknowledged_tells_the_tu(reliable: bool) -> None:
    clock, layer, out, request, txn = server(reliable=reliable)
    no_ack: list[float] = []
    txn.on_no_ack = lambda: no_ack.append(clock.now)
    txn.respond(respond(request, 200))
    clock.advance_to(TIMER_64T1 + 5)
    assert no_ack == [TIMER_64T1]
    assert state(txn) == State.TERMINATED and txn.key not in layer.servers
    # UDP: every T2 after the doubling reached it, the last one before Timer L.
    expected = [0.0] if reliable else [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5,
                                       31.5]
    assert out.times == expected
    assert clock.pending == 0


class RecordingApp:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.acks: list[Request] = []
        self.stray: list[Response] = []
        self.malformed: list[bytes] = []

    def on_request(self, request: Request, source: Peer) -> None:
        self.requests.append(request)

    def on_ack(self, request: Request, source: Peer) -> None:
        self.acks.append(request)

    def on_stray_response(self, response: Response, source: Peer) -> None:
        self.stray.append(response)

    def on_malformed(self, data: bytes, source: Peer, error: SipParseError) -> None:
        self.malformed.append(data)


def _stack() -> tuple[SipStack, FakeClock, RecordingApp]:
    """A stack without sockets: incoming bytes are fed to ``on_bytes`` directly."""
    stack = SipStack("127.0.0.1", 5060, "127.0.0.1")
    clock = FakeClock()
    app = RecordingApp()
    stack.app = app
    stack.layer = TransactionLayer(clock)
    return stack, clock, app


def test_a_failure_handling_a_message_is_counted_and_the_stack_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    stack, _clock, app = _stack()
    source = Peer("udp", "10.0.0.5", 5060)
    broken = RecordingApp()

    def fail(request: Request, _source: Peer) -> None:
        raise RuntimeError("a bug in the call code")

    broken.on_request = fail  # type: ignore[method-assign]
    stack.app = broken
    stack.on_bytes(make_request("OPTIONS", "z9hG4bKbug1").to_bytes(), source)
    assert stack.stats.handler_errors == 1
    assert "a bug in the call code" in caplog.text
    stack.app = app
    stack.on_bytes(make_request("OPTIONS", "z9hG4bKbug2").to_bytes(), source)
    assert [r.method for r in app.requests] == ["OPTIONS"]
    assert stack.stats.handler_errors == 1


@pytest.mark.parametrize("branch", ["z9hG4bKsrv01", None], ids=["rfc3261", "rfc2543"])
def test_ack_for_2xx_reaches_the_application_in_accepted(branch: str | None) -> None:
    """RFC 6026 7.1: an ACK arriving in Accepted is passed to the TU. A 2543 peer's ACK for
    the 2xx carries the INVITE's Call-ID, CSeq number, From tag and sent-by, which is all the
    2543 fallback key looks at; it must not be swallowed as a retransmission."""
    stack, _clock, app = _stack()
    source = Peer("udp", "10.0.0.5", 5060)
    invite = make_request("INVITE", branch)
    stack.on_bytes(invite.to_bytes(), source)
    assert len(app.requests) == 1
    received = app.requests[0]
    txn = stack.server_transaction(received, source)
    txn.respond(make_response(received, 200, to_tag="callee-tag"))
    assert state(txn) == State.ACCEPTED

    stack.on_bytes(invite.to_bytes(), source)  # a retransmitted INVITE is absorbed
    assert len(app.requests) == 1

    ack_branch = "z9hG4bKack2xx" if branch else None
    ack = make_request("ACK", ack_branch, to_tag="callee-tag")
    stack.on_bytes(ack.to_bytes(), source)
    assert [a.method for a in app.acks] == ["ACK"]


# -- non-INVITE server ------------------------------------------------------------------------


def test_non_invite_server_resends_last_response_and_timer_j() -> None:
    clock, layer, out, request, txn = server("BYE")
    assert state(txn) == State.TRYING
    retransmission = make_request("BYE", "z9hG4bKsrv01")
    assert layer.match_request(retransmission) is txn
    txn.on_retransmission(retransmission)
    assert out.sent == []  # Trying: retransmissions are discarded

    ok = respond(request, 200)
    txn.respond(ok)
    assert state(txn) == State.COMPLETED
    clock.advance_to(10.0)
    txn.on_retransmission(retransmission)
    assert [data for _, data in out.sent] == [ok.to_bytes(), ok.to_bytes()]
    txn.respond(respond(request, 500))
    assert len(out.sent) == 2

    clock.advance_to(TIMER_64T1 - 0.01)
    assert layer.servers[txn.key] is txn
    clock.advance_to(TIMER_64T1)  # Timer J, counted from the final response at t=0
    assert state(txn) == State.TERMINATED
    assert txn.key not in layer.servers
    assert layer.match_request(retransmission) is None
    assert len(out.sent) == 2  # the server never retransmits on its own


def test_non_invite_server_provisional_is_repeated_in_proceeding() -> None:
    _clock, _layer, out, request, txn = server("OPTIONS")
    trying = respond(request, 100, to_tag=None)
    txn.respond(trying)
    assert state(txn) == State.PROCEEDING
    txn.on_retransmission(make_request("OPTIONS", "z9hG4bKsrv01"))
    assert [data for _, data in out.sent] == [trying.to_bytes(), trying.to_bytes()]


def test_non_invite_server_timer_j_is_zero_over_tcp() -> None:
    clock, layer, _out, request, txn = server("BYE", reliable=True)
    txn.respond(respond(request, 200))
    assert layer.servers[txn.key] is txn
    clock.advance(0)
    assert state(txn) == State.TERMINATED
    assert txn.key not in layer.servers


# -- matching ---------------------------------------------------------------------------------


def test_server_key_for_invite_ack_and_cancel_with_same_branch() -> None:
    clock = FakeClock()
    layer = TransactionLayer(clock)
    invite = make_request("INVITE", "z9hG4bKsame")
    ack = make_request("ACK", "z9hG4bKsame", to_tag="t1")
    cancel = make_request("CANCEL", "z9hG4bKsame")
    assert server_key(invite) == ("z9hG4bKsame", "10.0.0.5:5060", "INVITE")
    assert server_key(ack) == server_key(invite)
    assert server_key(cancel) == ("z9hG4bKsame", "10.0.0.5:5060", "CANCEL")

    invite_txn = layer.new_server(invite, Wire(clock), False)
    assert layer.match_request(ack) is invite_txn
    assert layer.match_request(cancel) is None  # a CANCEL starts its own transaction
    assert layer.find_invite_server(cancel) is invite_txn
    cancel_txn = layer.new_server(cancel, Wire(clock), False)
    assert cancel_txn is not invite_txn
    assert layer.match_request(cancel) is cancel_txn
    assert layer.match_request(invite) is invite_txn
    assert layer.find_invite_server(make_request("CANCEL", "z9hG4bKother")) is None


def test_server_key_separates_branches_sent_by_and_methods() -> None:
    clock = FakeClock()
    layer = TransactionLayer(clock)
    txn = layer.new_server(make_request("INVITE", "z9hG4bKone"), Wire(clock), False)
    assert layer.match_request(make_request("INVITE", "z9hG4bKone")) is txn
    assert layer.match_request(make_request("INVITE", "z9hG4bKtwo")) is None
    assert layer.match_request(
        make_request("INVITE", "z9hG4bKone", sent_by="10.0.0.6:5060")) is None
    assert layer.match_request(make_request("BYE", "z9hG4bKone")) is None


def test_response_matches_client_transaction_by_branch_and_cseq_method() -> None:
    clock = FakeClock()
    layer = TransactionLayer(clock)
    upper = Upper(clock=clock)
    invite = make_request("INVITE", "z9hG4bKbr1")
    cancel = make_request("CANCEL", "z9hG4bKbr1")
    invite_txn = layer.new_client(invite, Wire(clock), False, upper.on_response,
                                  upper.on_timeout)
    assert invite_txn.key == client_key("z9hG4bKbr1", "INVITE")

    cancel_ok = respond(cancel, 200)
    assert layer.match_response(cancel_ok) is None  # same branch, other method
    cancel_txn = layer.new_client(cancel, Wire(clock), False, upper.on_response,
                                  upper.on_timeout)
    assert layer.match_response(cancel_ok) is cancel_txn
    assert layer.match_response(respond(invite, 487)) is invite_txn
    assert layer.match_response(respond(make_request("INVITE", "z9hG4bKbr2"), 180)) is None

    no_branch = _as_response(parse_message(wire(
        "SIP/2.0 200 OK\n"
        "Via: SIP/2.0/UDP 10.0.0.5:5060\n"
        "From: <sip:caller@10.0.0.5>;tag=caller-tag\n"
        "To: <sip:15551234@203.0.113.9>;tag=x\n"
        "Call-ID: call-1@10.0.0.5\n"
        "CSeq: 1 INVITE\n"
        "\n"
    )))
    assert layer.match_response(no_branch) is None


def test_rfc2543_requests_without_magic_cookie_still_match() -> None:
    for branch in (None, "1"):
        clock = FakeClock()
        layer = TransactionLayer(clock)
        out = Wire(clock)
        invite = make_request("INVITE", branch)
        txn = layer.new_server(invite, out, False)
        assert layer.match_request(make_request("INVITE", branch)) is txn
        # another CSeq, Call-ID, From tag or sent-by is another transaction
        assert layer.match_request(make_request("INVITE", branch, cseq=2)) is None
        assert layer.match_request(make_request("INVITE", branch, call_id="other")) is None
        assert layer.match_request(make_request("INVITE", branch, from_tag="other")) is None
        assert layer.match_request(
            make_request("INVITE", branch, sent_by="10.0.0.6:5060")) is None

        cancel = make_request("CANCEL", branch)
        assert layer.match_request(cancel) is None
        assert layer.find_invite_server(cancel) is txn

        busy = respond(invite, 486)
        txn.respond(busy)
        ack = make_request("ACK", branch, to_tag="callee-tag")
        assert layer.match_request(ack) is txn
        txn.on_retransmission(ack)
        assert state(txn) == State.CONFIRMED


def test_client_transaction_needs_a_branch() -> None:
    clock = FakeClock()
    layer = TransactionLayer(clock)
    upper = Upper(clock=clock)
    with pytest.raises(ValueError, match="branch"):
        layer.new_client(make_request("INVITE", None), Wire(clock), False,
                         upper.on_response, upper.on_timeout)
    assert layer.clients == {}


def test_finished_transactions_let_go_of_their_requests() -> None:
    """A transaction lingers for its wait timer (32 s for an accepted INVITE or a
    non-INVITE server transaction over UDP, at call rate): after the final response it
    must not keep the parsed request alive, only what retransmissions need."""
    import sys

    _clock, _layer, out, request, txn = server()
    txn.respond(respond(request, 180))
    assert txn.request is request
    ok = respond(request, 200)
    held = sys.getrefcount(request)
    txn.respond(ok)
    assert txn.request is None and sys.getrefcount(request) == held - 1
    assert state(txn) == State.ACCEPTED
    _clock.advance(T1)  # the 2xx is retransmitted from its bytes
    assert out.sent[-1][1] == ok.to_bytes() and len(out.sent) == 3

    _clock, _layer, _out, _upper, bye, ctxn = client("BYE")
    ctxn.receive(respond(bye, 200))
    assert ctxn.request is None and state(ctxn) == State.COMPLETED
