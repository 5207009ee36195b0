"""The call core (``b2bua/calls/call.py``) walked through whole calls with events and a
fake clock (``tests/callharness.py``): what the caller is sent, which requests go to which
destination, CANCELs, timers, capacity and the CDR, against ``docs/failover.md``,
``docs/calls.md`` and ``docs/media.md``.

Every call a test ends is checked by :func:`finished`: no capacity held, no timer left,
exactly one CDR, one ``CallEnded``, and no leg left watched but those the switchboard drops
with the call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import pytest
from callharness import (
    ANSWER,
    CALLER,
    OFFER,
    ORIGIN,
    START,
    CallHarness,
    Context,
    Ledger,
    invite_request,
    server_for,
    vendor,
)

from b2bua.calls.actions import (
    CancelInvite,
    GrowMedia,
    HoldGateway,
    NoteStarted,
    Release,
    Resolve,
    Respond,
    Send,
    SetTimer,
    StopMedia,
    Transact,
    UpdateMedia,
    WriteCdr,
)
from b2bua.calls.anchor import MAX_STREAMS, SetCipher, SetNat, SetRemote
from b2bua.calls.attempt import Attempt
from b2bua.calls.attempt_state import (
    TRANSITIONS as ATTEMPT_TRANSITIONS,
)
from b2bua.calls.attempt_state import (
    AttemptEvent,
    AttemptProtocolError,
    AttemptState,
    next_state,
)
from b2bua.calls.call import Call, map_vendor_failure
from b2bua.calls.call_state import (
    TRANSITIONS as CALL_TRANSITIONS,
)
from b2bua.calls.call_state import (
    CallProtocolError,
    CallState,
    CallStep,
    next_call_state,
)
from b2bua.calls.endpoints import Destination, Origin
from b2bua.calls.events import (
    AckReceived,
    CallerCancel,
    HangUp,
    InDialogRequest,
    MediaGrown,
    MediaStarted,
    NoAck,
    NoReply,
    Reply,
    RtpStarted,
    Side,
    StrayResponse,
    TimerFired,
    VendorResolved,
)
from b2bua.calls.failover import SwitchRules
from b2bua.calls.failover import best_final as failover_best
from b2bua.config.live import Params
from b2bua.numbers.lists import GroupRule, NumberGroups, PrefixRule
from b2bua.numbers.rules import NumberRules
from b2bua.routing.dns import Plan, Target
from b2bua.routing.gateways import RoutingGateway
from b2bua.sip.message import Request, Response, make_response
from b2bua.sip.parser import parse_message
from b2bua.sip.peer import Peer

# -- helpers --------------------------------------------------------------------------------


@dataclass
class LiveContext(Context):
    """The harness's context, asking for a gateway's *current* settings by id at its turn
    (as the switchboard does after a reload): a test replaces ``gateways[i]``."""

    def gateway_usable(self, gw: RoutingGateway, now: float) -> bool:
        current = next((g for g in self.gateways if g.id == gw.id), None)
        return current is not None and super().gateway_usable(current, now)


def make(*gateways: RoutingGateway, invite: Request | None = None, origin: Origin = ORIGIN,
         ctx: LiveContext | None = None, source: Peer = CALLER, **params: Any
         ) -> CallHarness:
    """A call from 1001 to 4420 over ``gateways`` (or ``ctx``'s), with the given system
    parameters."""
    if ctx is None:
        ctx = LiveContext(gateways=list(gateways))
    ctx.params.values.update(params)
    return CallHarness(ctx, invite=invite, origin=origin, source=source)


class LaterHarness(CallHarness):
    """A call that starts at ``at`` on the fake clock (another call of the same switch)."""

    def __init__(self, ctx: Context, invite: Request, at: float) -> None:
        self.ctx = ctx
        self.now = at
        self.ledger = Ledger()
        self.invite = invite
        self.server = server_for(invite)
        self.call = Call(ctx, 2, invite, CALLER, self.server, ORIGIN, at)
        self.carry_out(self.call.begin(at))


def harness_at(ctx: Context, at: float, call_id: str) -> CallHarness:
    return LaterHarness(ctx, invite_request(call_id=call_id), at)


def gws(count: int, **fields: Any) -> list[RoutingGateway]:
    """``count`` vendors matching 44, tried in id order; ``fields`` apply to the first."""
    return [vendor(i, "44", priority=i, **(fields if i == 1 else {}))
            for i in range(1, count + 1)]


def finished(h: CallHarness) -> None:
    """The call is over and left nothing behind."""
    assert h.call.state is CallState.ENDED
    assert h.in_use() == 0, h.ledger.occupied
    assert all(count == 0 for count in h.ctx.occupied.values()), h.ctx.occupied
    assert h.ledger.timers == {}
    assert len(h.ledger.cdrs) == 1
    assert h.ledger.ended == 1
    assert not h.call.timers
    # A leg whose INVITE failed or timed out, or that we hung up, is forgotten by the
    # core; the switchboard drops the call's other legs with CallEnded.
    ours = {a.dialog.call_id for a in h.call.attempts if a.dialog is not None}
    assert h.ledger.watched <= ours
    for attempt in h.call.attempts:
        if attempt.outcome in ("failed", "invite_timeout") and attempt.dialog is not None:
            assert attempt.dialog.call_id not in h.ledger.watched
        assert not attempt.open


def state(h: CallHarness) -> CallState:
    """The call's state now (a function, so a type checker does not keep an old one)."""
    return h.call.state


def peer_of(h: CallHarness, seq: int) -> Peer:
    """Where attempt ``seq``'s INVITE was sent."""
    token = h.call.attempts[seq - 1].token
    return next(a.peer for a in h.ledger.actions
                if isinstance(a, Transact) and a.token == token)


def transact_of(h: CallHarness, token: int) -> Transact:
    return next(a for a in h.ledger.actions if isinstance(a, Transact) and a.token == token)


def tried(h: CallHarness) -> list[str | None]:
    """The gateways in the order their INVITEs went (a DNS failure sends none)."""
    return [a.gateway_name for a in h.call.attempts if a.token]


def cancelled(h: CallHarness) -> list[int]:
    """The attempts a CANCEL went to, in order."""
    by_token = {a.token: a.seq for a in h.call.attempts}
    return [by_token[t] for t in h.ledger.cancels]


def acks(h: CallHarness) -> list[Request]:
    out = []
    for data, _peer in h.ledger.sent:
        message = parse_message(data)
        assert isinstance(message, Request) and message.method == "ACK"
        out.append(message)
    return out


def byes(h: CallHarness, side: Side) -> list[Request]:
    """The BYEs the call sent on one leg."""
    inbound = h.invite.call_id
    return [r for r in h.ledger.untracked if r.method == "BYE"
            and (r.call_id == inbound) == (side is Side.CALLER)]


def last_token(h: CallHarness) -> int:
    return max(h.ledger.requests)


def outcomes(h: CallHarness) -> list[str]:
    return [record["outcome"] for record in h.attempt_records]


def connect(h: CallHarness, seq: int, *, ring: bool = True, body: bytes = ANSWER,
            headers: tuple[tuple[str, str], ...] = ()) -> None:
    """Attempt ``seq`` rings (optionally) and answers; the caller ACKs."""
    if ring:
        h.answer(seq, 180)
    h.answer(seq, 200, body, headers=headers)
    h.ack_from_caller()
    assert h.call.state is CallState.CONFIRMED


def caller_bye(h: CallHarness) -> None:
    h.in_dialog(Side.CALLER, "BYE")
    finished(h)


def responses_on(h: CallHarness, server: Any) -> list[Response]:
    return [r for s, r in h.ledger.responses if s is server]


# The bodies each side gets: the relay's address on c= (o= is the sender's own), its port.
RELAYED_OFFER = OFFER.replace(b"c=IN IP4 192.0.2.10", b"c=IN IP4 198.51.100.1").replace(
    b"4000", b"40002")
RELAYED_ANSWER = ANSWER.replace(b"c=IN IP4 203.0.113.5", b"c=IN IP4 198.51.100.1").replace(
    b"5000", b"40000")


def relayed(*gateways: RoutingGateway, **params: Any) -> CallHarness:
    """A call whose media is relayed (``SS_MEDIAPROXYMODE`` On), its ports bound."""
    ctx = LiveContext(gateways=list(gateways), relay=True)
    h = make(ctx=ctx, SS_MEDIAPROXYMODE="On", **params)
    assert h.ledger.media == ["start"]
    assert h.call.attempts == []  # the INVITE waits for the ports
    h.media_started()
    return h


# -- the timers of an attempt ---------------------------------------------------------------

# (provisional, with SDP, the attempt's outcome when its timer fires, the system parameter,
# the gateway override): docs/failover.md, "Timers of an attempt".
TIMER_ROWS = [
    (100, False, "trying_timeout", "SS_SIP_TIMEOUT_TRYING", "trying_timeout"),
    (183, False, "session_progress_timeout", "SS_SIP_TIMEOUT_SESSION_PROGRESS",
     "session_progress_timeout"),
    (181, False, "session_progress_timeout", "SS_SIP_TIMEOUT_SESSION_PROGRESS",
     "session_progress_timeout"),
    (199, False, "session_progress_timeout", "SS_SIP_TIMEOUT_SESSION_PROGRESS",
     "session_progress_timeout"),
    (183, True, "session_progress_sdp_timeout", "SS_SIP_TIMEOUT_SESSION_PROGRESS_SDP",
     "session_progress_sdp_timeout"),
    (182, True, "session_progress_sdp_timeout", "SS_SIP_TIMEOUT_SESSION_PROGRESS_SDP",
     "session_progress_sdp_timeout"),
    (180, False, "ringing_timeout", "SS_SIP_TIMEOUT_RINGING", "ringing_timeout"),
]
TIMER_IDS = [f"{row[0]}{'+sdp' if row[1] else ''}" for row in TIMER_ROWS]


@pytest.mark.parametrize(("status", "sdp", "outcome", "param", "field"), TIMER_ROWS,
                         ids=TIMER_IDS)
def test_a_provisional_timer_expiring_cancels_and_tries_the_next_gateway(
        status: int, sdp: bool, outcome: str, param: str, field: str) -> None:
    # Not committed: SDP does not commit with stop-after-SDP Off.
    settings: dict[str, Any] = {"SS_SIP_STOP_SWITCH_AFTER_SDP": "Off", param: 7}
    h = make(*gws(2), **settings)
    h.advance(1)
    h.answer(1, status, ANSWER if sdp else b"")
    assert h.ledger.timers["attempt-1"] == START + 8
    h.advance(6.9)
    assert h.ledger.cancels == [] and len(h.call.attempts) == 1
    h.advance(0.1)
    assert cancelled(h) == [1]  # a provisional came: the CANCEL goes now
    assert tried(h) == ["v1", "v2"]
    assert h.call.attempts[0].outcome == outcome
    assert h.ledger.timers == {"release-1": START + 8 + 32}
    # The caller heard the provisional (never a 100: it had ours) and nothing final yet.
    assert h.caller_statuses == ([100] if status == 100 else [100, status])
    h.answer(1, 487)  # the CANCELled INVITE's final response: nothing for the caller
    assert h.ctx.occupied[1] == 0 and "release-1" not in h.ledger.timers
    connect(h, 2)
    assert h.caller_statuses[-1] == 200
    caller_bye(h)
    assert outcomes(h)[0] == outcome
    assert h.attempt_records[0]["final_code"] is None


@pytest.mark.parametrize(("status", "sdp", "outcome", "param", "field"), TIMER_ROWS,
                         ids=TIMER_IDS)
def test_a_gateway_timer_override_replaces_the_system_value(
        status: int, sdp: bool, outcome: str, param: str, field: str) -> None:
    settings: dict[str, Any] = {"SS_SIP_STOP_SWITCH_AFTER_SDP": "Off", param: 50}
    h = make(*gws(2, **{field: 3}), **settings)
    h.answer(1, status, ANSWER if sdp else b"")
    assert h.ledger.timers["attempt-1"] == START + 3
    h.advance(3)
    assert cancelled(h) == [1] and tried(h) == ["v1", "v2"]
    # The next gateway has no override: the system value.
    h.answer(2, status, ANSWER if sdp else b"")
    assert h.ledger.timers["attempt-2"] == START + 3 + 50
    h.feed(HangUp("operator"))
    finished(h)


def test_a_gateway_timer_of_zero_follows_the_system_value() -> None:
    h = make(*gws(1, ringing_timeout=0), SS_SIP_TIMEOUT_RINGING=44)
    h.answer(1, 180)
    assert h.ledger.timers["attempt-1"] == START + 44
    h.feed(CallerCancel())
    finished(h)


def test_each_provisional_replaces_the_timer_running() -> None:
    h = make(*gws(2), SS_SIP_TIMEOUT_TRYING=5, SS_SIP_TIMEOUT_SESSION_PROGRESS=9,
             SS_SIP_TIMEOUT_RINGING=30, SS_SIP_STOP_SWITCH_AFTER_SDP="Off")
    h.answer(1, 100)
    assert h.ledger.timers == {"attempt-1": START + 5}
    h.advance(4)
    h.answer(1, 183)
    assert h.ledger.timers == {"attempt-1": START + 4 + 9}
    h.advance(8)
    h.answer(1, 180)
    assert h.ledger.timers == {"attempt-1": START + 12 + 30}
    h.advance(29)
    assert h.ledger.cancels == []  # the trying and progress timers were replaced
    h.answer(1, 200, ANSWER)
    assert "attempt-1" not in h.ledger.timers
    h.ack_from_caller()
    caller_bye(h)


def test_the_invite_goes_with_the_gateways_invite_timeout_and_the_resend_intervals() -> None:
    h = make(*gws(2, invite_timeout=2), SS_SIP_TIMEOUT_INVITE=9,
             SS_SIP_RESEND_INTERVAL=[0.25, 0.5, 1.0])
    first = transact_of(h, h.call.attempts[0].token)
    assert h.ledger.watched == {first.request.call_id}  # its responses come to this call
    assert first.timeout == 2 and first.resend == [0.25, 0.5, 1.0]
    assert first.request.method == "INVITE" and first.request.body == OFFER
    assert first.peer == Peer("udp", "203.0.113.1", 5060)
    h.silence(1)
    second = transact_of(h, h.call.attempts[1].token)
    assert second.timeout == 9 and second.peer == Peer("udp", "203.0.113.2", 5060)
    h.feed(CallerCancel())
    finished(h)


# -- INVITE timeout -------------------------------------------------------------------------


def test_no_response_within_the_invite_timeout_tries_the_next_gateway() -> None:
    h = make(*gws(2))
    h.advance(10)
    h.silence(1)
    assert tried(h) == ["v1", "v2"]
    assert h.ledger.cancels == []  # nothing came back: nothing to cancel
    assert h.ctx.occupied[1] == 0  # v1's capacity is back at once
    connect(h, 2)
    caller_bye(h)
    assert outcomes(h) == ["invite_timeout", "answered"]
    assert h.attempt_records[0]["final_code"] is None
    assert h.attempt_records[0]["duration"] == 10
    assert h.cdr.routing_gateway == "v2"


@pytest.mark.parametrize(("system", "gateway"), [
    ("On", None), ("Off", True),
], ids=["system-on", "gateway-override-on"])
def test_stop_after_invite_timeout_gives_the_caller_408(system: str, gateway: bool | None
                                                       ) -> None:
    h = make(*gws(2, stop_switch_after_invite_timeout=gateway),
             SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT=system)
    h.silence(1)
    assert tried(h) == ["v1"]
    assert h.caller_statuses == [100, 408]
    assert h.ledger.to_caller[-1].reason == "Request Timeout"
    finished(h)
    assert (h.cdr.final_code, h.cdr.hangup_by, h.cdr.termination_reason) == (
        408, "system", "INVITE timeout")
    assert outcomes(h) == ["invite_timeout"]


def test_a_gateway_can_switch_off_the_systems_stop_after_invite_timeout() -> None:
    h = make(*gws(2, stop_switch_after_invite_timeout=False),
             SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT="On")
    h.silence(1)
    assert tried(h) == ["v1", "v2"]
    h.silence(2)  # v2 follows the system's On: "INVITE timeout", not "every ... failed"
    assert h.caller_statuses == [100, 408]
    finished(h)
    assert h.cdr.termination_reason == "INVITE timeout"


def test_every_gateway_timing_out_gives_the_caller_408() -> None:
    h = make(*gws(3))
    for seq in (1, 2, 3):
        h.silence(seq)
    assert tried(h) == ["v1", "v2", "v3"]
    assert h.caller_statuses == [100, 408]
    finished(h)
    assert (h.cdr.final_code, h.cdr.hangup_by, h.cdr.termination_reason) == (
        408, "system", "every routing gateway failed")
    assert h.cdr.routing_gateway == "v3"


# -- commit ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("system", "gateway", "committed"), [
    ("On", None, True), ("Off", None, False), ("On", False, False), ("Off", True, True),
])
def test_sdp_in_a_provisional_commits_under_stop_after_sdp(
        system: str, gateway: bool | None, committed: bool) -> None:
    h = make(*gws(2, stop_switch_after_sdp=gateway), SS_SIP_STOP_SWITCH_AFTER_SDP=system)
    h.answer(1, 183, ANSWER)
    assert h.ledger.to_caller[-1].status == 183 and h.ledger.to_caller[-1].body == ANSWER
    h.answer(1, 503)
    if committed:
        assert tried(h) == ["v1"] and h.caller_statuses == [100, 183, 503]
        finished(h)
        assert h.cdr.termination_reason == "vendor 503 Service Unavailable"
    else:
        assert tried(h) == ["v1", "v2"]
        connect(h, 2, ring=False)
        assert h.caller_statuses == [100, 183, 200]
        caller_bye(h)


def test_a_100_never_commits_even_where_an_18x_would() -> None:
    h = make(*gws(2, switch_after_ringing=False))
    h.answer(1, 100)
    h.answer(1, 503)
    assert tried(h) == ["v1", "v2"]
    h.silence(2)
    finished(h)
    assert h.caller_statuses == [100, 503]


@pytest.mark.parametrize("status", [180, 183, 181])
@pytest.mark.parametrize("switch_after_ringing", [True, False])
def test_an_18x_commits_when_the_gateway_does_not_switch_after_ringing(
        status: int, switch_after_ringing: bool) -> None:
    h = make(*gws(2, switch_after_ringing=switch_after_ringing))
    h.answer(1, status)
    h.answer(1, 480)
    if switch_after_ringing:
        assert tried(h) == ["v1", "v2"]
        h.answer(2, 486)
        assert h.caller_statuses == [100, status, 486]
    else:
        assert tried(h) == ["v1"]
        assert h.caller_statuses == [100, status, 480]
    finished(h)


@pytest.mark.parametrize(("system", "gateway", "until_connect", "committed"), [
    ("On", None, "Off", True),
    ("Off", None, "Off", False),
    ("On", False, "Off", False),
    ("Off", True, "Off", True),
    ("On", None, "On", False),
])
def test_rtp_from_the_gateway_commits_under_stop_after_rtp_start(
        system: str, gateway: bool | None, until_connect: str, committed: bool) -> None:
    h = make(*gws(2, stop_switch_after_rtp_start=gateway),
             SS_GATEWAY_SWITCH_STOP_AFTER_RTP_START=system, SS_SIP_STOP_SWITCH_AFTER_SDP="Off",
             SS_GATEWAY_SWITCH_UNTIL_CONNECT=until_connect)
    h.answer(1, 183, ANSWER)
    h.feed(RtpStarted())
    assert h.call.committed is committed
    h.answer(1, 503)
    if committed:
        assert tried(h) == ["v1"] and h.caller_statuses == [100, 183, 503]
    else:
        assert tried(h) == ["v1", "v2"]
        h.answer(2, 200, ANSWER)
        h.ack_from_caller()
        h.in_dialog(Side.CALLEE, "BYE")
        assert h.caller_statuses == [100, 183, 200]
    finished(h)


def test_rtp_before_any_attempt_commits_nothing() -> None:
    ctx = LiveContext(gateways=gws(2), relay=True)
    h = make(ctx=ctx, SS_MEDIAPROXYMODE="On")
    h.feed(RtpStarted())  # no attempt yet: the ports are being bound
    assert not h.call.committed
    h.media_started()
    h.answer(1, 503)
    assert tried(h) == ["v1", "v2"]
    h.feed(HangUp("shutdown"))
    finished(h)


def test_a_relay_wanted_but_absent_in_the_engine_dials_at_once() -> None:
    h = make(*gws(1), SS_MEDIAPROXYMODE="On")  # the context has no media plane
    assert h.ledger.media == [] and tried(h) == ["v1"] and h.call.media is None
    assert h.invite_of(1).body == OFFER
    h.feed(CallerCancel())
    finished(h)


@pytest.mark.parametrize(("status", "sdp", "outcome", "reason", "fields", "rtp"), [
    (180, False, "ringing_timeout", "ringing timeout", {"switch_after_ringing": False},
     False),
    (183, True, "session_progress_sdp_timeout", "session progress sdp timeout", {}, False),
    (183, False, "session_progress_timeout", "session progress timeout",
     {"switch_after_ringing": False}, False),
    (183, False, "session_progress_timeout", "session progress timeout", {}, True),
], ids=["ringing-no-switch", "sdp", "progress-no-switch", "rtp-started"])
def test_a_timer_expiring_on_a_committed_call_cancels_and_gives_408(
        status: int, sdp: bool, outcome: str, reason: str, fields: dict[str, Any],
        rtp: bool) -> None:
    h = make(*gws(2, **fields), SS_SIP_TIMEOUT_RINGING=5, SS_SIP_TIMEOUT_SESSION_PROGRESS=5,
             SS_SIP_TIMEOUT_SESSION_PROGRESS_SDP=5)
    h.answer(1, status, ANSWER if sdp else b"")
    if rtp:
        h.feed(RtpStarted())
    h.advance(5)
    assert cancelled(h) == [1]
    assert tried(h) == ["v1"]
    assert h.caller_statuses == [100, status, 408]
    assert h.ledger.to_caller[-1].reason == "Request Timeout"
    finished(h)
    assert (h.cdr.final_code, h.cdr.hangup_by, h.cdr.termination_reason) == (
        408, "system", reason)
    assert outcomes(h) == [outcome]
    h.answer(1, 487)  # the CANCELled INVITE ends later: nothing more happens
    assert h.caller_statuses == [100, status, 408]
    finished(h)


# -- until connect --------------------------------------------------------------------------


def test_until_connect_overrides_the_sdp_and_busy_rules() -> None:
    h = make(*gws(3), SS_GATEWAY_SWITCH_UNTIL_CONNECT="On",
             SS_SIP_STOP_SWITCH_AFTER_SDP="On", SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY="On")
    h.answer(1, 183, ANSWER)
    assert not h.call.committed
    h.answer(1, 503)
    h.answer(2, 486)
    connect(h, 3)
    assert tried(h) == ["v1", "v2", "v3"]
    assert h.caller_statuses == [100, 183, 180, 200]
    caller_bye(h)
    assert [r["final_code"] for r in h.attempt_records] == [503, 486, 200]


def test_until_connect_overrides_the_ringing_commit_and_timers_switch() -> None:
    h = make(*gws(2, switch_after_ringing=False), SS_GATEWAY_SWITCH_UNTIL_CONNECT="On",
             SS_SIP_TIMEOUT_RINGING=3)
    h.answer(1, 180)
    assert not h.call.committed
    h.advance(3)
    assert cancelled(h) == [1] and tried(h) == ["v1", "v2"]
    connect(h, 2)
    caller_bye(h)
    assert outcomes(h) == ["ringing_timeout", "answered"]


def test_until_connect_overrides_stop_after_invite_timeout() -> None:
    h = make(*gws(2), SS_GATEWAY_SWITCH_UNTIL_CONNECT="On",
             SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT="On")
    h.silence(1)
    assert tried(h) == ["v1", "v2"]
    connect(h, 2)
    caller_bye(h)


def test_until_connect_does_not_override_the_gateways_stop_codes() -> None:
    h = make(*gws(2, stop_switch_codes=(480,)), SS_GATEWAY_SWITCH_UNTIL_CONNECT="On")
    h.answer(1, 480)
    assert tried(h) == ["v1"] and h.caller_statuses == [100, 480]
    finished(h)


# -- final failures -------------------------------------------------------------------------


@pytest.mark.parametrize(("stop_codes", "status", "caller_hears"), [
    ((480,), 480, 480),
    ((480, 404), 404, 404),
    ((503,), 503, 503),
    ((302,), 302, 503),
    ((407,), 407, 503),
])
def test_a_stop_code_ends_the_call_with_it(stop_codes: tuple[int, ...], status: int,
                                           caller_hears: int) -> None:
    h = make(*gws(2, stop_switch_codes=stop_codes))
    h.answer(1, status)
    assert tried(h) == ["v1"]
    assert h.caller_statuses == [100, caller_hears]
    finished(h)
    assert h.cdr.final_code == caller_hears and h.cdr.hangup_by == "callee"
    assert h.cdr.termination_reason.startswith(f"vendor {status} ")
    assert h.attempt_records[0]["final_code"] == status


def test_a_code_not_in_the_stop_codes_switches() -> None:
    h = make(*gws(2, stop_switch_codes=(404,)))
    h.answer(1, 480)
    assert tried(h) == ["v1", "v2"]
    connect(h, 2)
    caller_bye(h)


@pytest.mark.parametrize(("system", "gateway", "stops"), [
    ("On", None, True), ("Off", None, False), ("On", False, False), ("Off", True, True),
])
def test_busy_ends_the_call_under_stop_after_busy(system: str, gateway: bool | None,
                                                  stops: bool) -> None:
    h = make(*gws(2, stop_switch_after_busy=gateway),
             SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY=system)
    h.answer(1, 180)
    h.answer(1, 486)
    if stops:
        assert tried(h) == ["v1"] and h.caller_statuses == [100, 180, 486]
        finished(h)
        assert (h.cdr.hangup_by, h.cdr.termination_reason) == ("callee",
                                                               "vendor 486 Busy Here")
    else:
        assert tried(h) == ["v1", "v2"]
        connect(h, 2)
        caller_bye(h)


@pytest.mark.parametrize("status", [400, 403, 404, 480, 487, 488, 500, 502, 503, 600, 603])
def test_any_other_failure_tries_the_next_gateway(status: int) -> None:
    h = make(*gws(2))
    h.answer(1, 183)
    h.answer(1, status)
    assert tried(h) == ["v1", "v2"]
    assert h.ctx.occupied[1] == 0
    assert h.call.attempts[0].dialog is not None
    assert h.call.attempts[0].dialog.call_id not in h.ledger.watched
    connect(h, 2)
    caller_bye(h)
    assert [r["final_code"] for r in h.attempt_records] == [status, 200]
    assert outcomes(h) == ["failed", "answered"]
    assert h.attempt_records[0]["first_provisional"] == 183


@pytest.mark.parametrize(("answers", "caller_hears"), [
    ([503, 486, None], 486),
    ([500, 404, 480], 404),
    ([480, 603, 600], 600),
    ([503, 500, None], 503),
    ([500, 502], 500),
    ([None, 502, None], 502),
    ([503, 403, 402], 403),
    ([503, 415, 408], 415),
    ([408, None], 408),
    ([302, 500], 500),
    ([401, 502], 503),
    ([407, 302], 503),
    ([301], 503),
    ([None, None], 408),
], ids=lambda v: str(v))
def test_when_every_gateway_failed_the_caller_hears_the_most_telling_code(
        answers: list[int | None], caller_hears: int) -> None:
    h = make(*gws(len(answers)), SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY="Off")
    for seq, status in enumerate(answers, start=1):
        if status is None:
            h.silence(seq)
        else:
            h.answer(seq, status)
    assert len(tried(h)) == len(answers)
    assert h.caller_statuses == [100, caller_hears]
    finished(h)
    assert h.cdr.final_code == caller_hears
    assert h.cdr.termination_reason == "every routing gateway failed"
    assert h.cdr.hangup_by == ("system" if caller_hears == 408 else "callee")
    assert [r["final_code"] for r in h.attempt_records] == answers  # each vendor's own


@pytest.mark.parametrize("status", [300, 301, 302, 380, 401, 407])
@pytest.mark.parametrize("committed", [False, True])
def test_a_challenge_or_redirect_reaches_the_caller_as_503(status: int, committed: bool
                                                           ) -> None:
    h = make(*gws(1))
    if committed:
        h.answer(1, 183, ANSWER)
        assert h.call.committed
    h.answer(1, status)
    assert h.caller_statuses[-1] == 503
    assert map_vendor_failure(status) == 503
    finished(h)
    assert h.cdr.final_code == 503
    assert h.attempt_records[0]["final_code"] == status


# -- the route ------------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "expected"), [
    (1, ["v1"]), (2, ["v1", "v2"]), (None, ["v1", "v2", "v3"]),
])
def test_the_switch_limit_caps_the_gateways_tried(limit: int | None, expected: list[str]
                                                  ) -> None:
    h = make(*gws(3), SS_GATEWAY_SWITCH_LIMIT=limit)
    for seq in range(1, len(expected) + 1):
        h.answer(seq, 503)
    assert tried(h) == expected
    assert h.caller_statuses == [100, 503]
    finished(h)
    assert h.cdr.termination_reason == "every routing gateway failed"


def test_a_gateway_disabled_since_the_plan_is_skipped() -> None:
    h = make(*gws(3))
    h.ctx.gateways[1] = dataclasses.replace(h.ctx.gateways[1], enabled=False)
    h.answer(1, 503)
    assert tried(h) == ["v1", "v3"]
    connect(h, 2)
    caller_bye(h)


def test_a_gateway_full_by_its_turn_is_skipped() -> None:
    ctx = LiveContext(gateways=[vendor(1, "44", 0), vendor(2, "44", 1, capacity=2),
                                vendor(3, "44", 2)])
    h = make(ctx=ctx)
    ctx.occupied[2] = 2  # two other calls took it meanwhile
    h.answer(1, 500)
    assert tried(h) == ["v1", "v3"]
    h.answer(2, 404)
    assert h.caller_statuses == [100, 404]
    ctx.occupied[2] = 0
    finished(h)


def test_a_gateway_held_by_its_turn_is_skipped_and_a_limit_does_not_count_it() -> None:
    h = make(*gws(3), SS_GATEWAY_SWITCH_LIMIT=2)
    h.ctx.held_until[2] = START + 60
    h.answer(1, 500)
    assert tried(h) == ["v1", "v3"]
    h.answer(2, 500)
    finished(h)


def test_gateways_skipped_after_a_timeout_leave_408_as_the_answer() -> None:
    h = make(*gws(3))
    h.ctx.held_until[2] = START + 60
    h.ctx.gateways[2] = dataclasses.replace(h.ctx.gateways[2], enabled=False)
    h.silence(1)
    assert tried(h) == ["v1"]
    assert h.caller_statuses == [100, 408]  # v1 was tried: it timed out
    finished(h)


@pytest.mark.parametrize(("gateways", "code", "why"), [
    ([vendor(1, "33")], 404, "no routing gateway matches the callee"),
    ([vendor(1, "44", enabled=False)], 503,
     "every matching routing gateway is disabled, full or unavailable"),
    ([vendor(1, "44", capacity=0)], 503,
     "every matching routing gateway is disabled, full or unavailable"),
])
def test_a_callee_without_a_usable_gateway(gateways: list[RoutingGateway], code: int,
                                            why: str) -> None:
    h = make(*gateways)
    assert h.call.attempts == []
    assert h.caller_statuses == [100, code]
    finished(h)
    assert (h.cdr.final_code, h.cdr.hangup_by, h.cdr.termination_reason) == (
        code, "system", why)
    assert h.cdr.routing_gateway is None and h.ledger.notes == ["started"]


def test_a_call_from_a_vendor_never_goes_back_to_it() -> None:
    gateways = gws(2)
    h = make(*gateways, origin=Origin.vendor(gateways[0]))
    assert tried(h) == ["v2"]
    h.answer(1, 404)
    finished(h)
    assert h.cdr.mapping_gateway is None and h.cdr.origin_vendor == "v1"


# -- Retry-After ----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "held_for"), [
    ("120", 120),
    ("120;duration=3600", 120),
    ("86400", 86400),
    ("999999", 86400),
    ("0", None),
    ("soon", None),
    (None, None),
])
def test_a_503_with_retry_after_takes_the_gateway_out_of_routing(
        value: str | None, held_for: int | None) -> None:
    h = make(*gws(2))
    h.advance(5)
    headers = (("Retry-After", value),) if value is not None else ()
    h.answer(1, 503, headers=headers)
    assert tried(h) == ["v1", "v2"]
    holds = [a for a in h.ledger.actions if isinstance(a, HoldGateway)]
    if held_for is None:
        assert holds == []
    else:
        assert [(a.gateway.id, a.until) for a in holds] == [(1, START + 5 + held_for)]
    connect(h, 2)
    caller_bye(h)


def test_a_gateway_held_by_retry_after_is_left_out_of_the_next_call() -> None:
    h = make(*gws(2))
    h.answer(1, 503, headers=(("Retry-After", "120"),))
    connect(h, 2)
    caller_bye(h)
    following = harness_at(h.ctx, START + 119, "in-2")
    assert tried(following) == ["v2"]
    later = harness_at(h.ctx, START + 121, "in-3")
    assert tried(later) == ["v1"]


def test_a_committed_503_with_retry_after_also_holds_the_gateway() -> None:
    h = make(*gws(2))
    h.answer(1, 183, ANSWER)
    h.answer(1, 503, headers=(("Retry-After", "30"),))
    assert h.caller_statuses == [100, 183, 503]
    assert h.ledger.holds == {1: START + 30}
    finished(h)


def test_retry_after_with_a_comment_is_honoured() -> None:
    """RFC 3261 20.33: ``Retry-After: 120 (I'm in a meeting)`` is 120 seconds."""
    h = make(*gws(2))
    h.answer(1, 503, headers=(("Retry-After", "120 (I'm in a meeting)"),))
    assert h.ledger.holds == {1: START + 120}
    h.feed(CallerCancel())
    finished(h)


# -- vendors by DNS name --------------------------------------------------------------------

T1 = Target("vendor.test", "203.0.113.51", 5060)
T2 = Target("vendor.test", "203.0.113.52", 5070)


def dns_gateways(count: int = 2, **fields: Any) -> list[RoutingGateway]:
    """v1 named vendor.test (port by SRV), then IP vendors."""
    first, *rest = gws(count, **fields)
    return [dataclasses.replace(first, host="vendor.test", port=None), *rest]


def dns_call(plan: Plan, count: int = 2, **params: Any) -> CallHarness:
    gateways = dns_gateways(count)
    ctx = LiveContext(gateways=gateways, plans={1: plan})
    return make(ctx=ctx, **params)


@pytest.mark.parametrize("failure", ["timeout", "503"])
def test_a_timeout_or_503_from_one_target_tries_the_gateways_next_target(failure: str
                                                                          ) -> None:
    h = dns_call(Plan(targets=(T1, T2)), SS_GATEWAY_SWITCH_LIMIT=1)
    assert peer_of(h, 1) == Peer("udp", "203.0.113.51", 5060)
    invite = h.invite_of(1)
    assert str(invite.ruri) == "sip:4420@vendor.test"
    if failure == "timeout":
        h.silence(1)
    else:
        h.answer(1, 503, headers=(("Retry-After", "60"),))
    # the next target, the same gateway; the limit counts gateways, not targets
    assert tried(h) == ["v1", "v1"]
    assert peer_of(h, 2) == Peer("udp", "203.0.113.52", 5070)
    assert h.ledger.holds == {}  # not the last target: nothing out of routing
    connect(h, 2)
    caller_bye(h)
    assert [r["target"] for r in h.attempt_records] == ["203.0.113.51:5060",
                                                        "203.0.113.52:5070"]
    assert outcomes(h) == ["invite_timeout" if failure == "timeout" else "failed",
                           "answered"]


def test_after_the_last_target_the_gateways_own_rules_apply() -> None:
    h = dns_call(Plan(targets=(T1, T2)))
    h.answer(1, 503)
    h.answer(2, 503, headers=(("Retry-After", "60"),))
    assert h.ledger.holds == {1: START + 60}
    assert tried(h) == ["v1", "v1", "v2"]
    h.silence(3)
    assert h.caller_statuses == [100, 503]
    finished(h)


def test_stop_after_invite_timeout_applies_after_the_last_target() -> None:
    h = dns_call(Plan(targets=(T1, T2)),
                 SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT="On")
    h.silence(1)
    assert tried(h) == ["v1", "v1"]
    h.silence(2)
    assert tried(h) == ["v1", "v1"] and h.caller_statuses == [100, 408]
    finished(h)


@pytest.mark.parametrize("status", [404, 500, 502, 486, 603])
def test_another_failure_from_a_target_is_the_gateways_answer(status: int) -> None:
    h = dns_call(Plan(targets=(T1, T2)), SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY="Off")
    h.answer(1, status)
    assert tried(h) == ["v1", "v2"]
    assert peer_of(h, 2) == Peer("udp", "203.0.113.2", 5060)
    h.answer(2, 480)
    assert h.caller_statuses == [100, map_vendor_failure(failover_best([status, 480]))]
    finished(h)


def test_a_committed_call_does_not_move_to_the_next_target() -> None:
    h = dns_call(Plan(targets=(T1, T2)))
    h.answer(1, 183, ANSWER)
    h.answer(1, 503)
    assert tried(h) == ["v1"]
    assert h.caller_statuses == [100, 183, 503]
    finished(h)


def test_a_gateway_without_an_address_is_a_dns_failure_and_the_route_goes_on() -> None:
    h = dns_call(Plan(failure="no address for vendor.test (no such name)"))
    assert tried(h) == ["v2"]
    assert h.ctx.stats.dns_failures == 1
    assert [a.outcome for a in h.call.attempts] == ["dns_failure", "pending"]
    connect(h, 2)
    caller_bye(h)
    assert outcomes(h) == ["dns_failure", "answered"]
    first = h.attempt_records[0]
    assert first["target"] is None and first["call_id"] is None
    assert first["routing_gateway"] == "v1"


def test_no_gateway_with_an_address_gives_503_with_the_dns_answer() -> None:
    h = dns_call(Plan(failure="no address for vendor.test (no such name)"), count=1)
    assert h.caller_statuses == [100, 503]
    finished(h)
    assert (h.cdr.hangup_by, h.cdr.termination_reason) == (
        "system", "no address for vendor.test (no such name)")
    assert outcomes(h) == ["dns_failure"]
    assert h.ledger.occupied == {}  # nothing was ever sent


def test_a_cold_dns_cache_resolves_before_the_invite() -> None:
    h = dns_call(Plan(missing=(("_sip._udp.vendor.test", "SRV"),)))
    assert h.call.attempts == []
    resolves = [a for a in h.ledger.actions if isinstance(a, Resolve)]
    assert [a.gateway.id for a in resolves] == [1]
    h.advance(0.2)
    h.feed(VendorResolved(resolves[0].gateway, Plan(targets=(T2,))))
    assert tried(h) == ["v1"] and peer_of(h, 1) == Peer("udp", "203.0.113.52", 5070)
    connect(h, 1)
    caller_bye(h)


def test_a_resolved_name_without_an_address_goes_on_to_the_next_gateway() -> None:
    h = dns_call(Plan(missing=(("vendor.test", "A"),)))
    gw = h.ctx.gateways[0]
    h.feed(VendorResolved(gw, Plan(failure="no address for vendor.test (no records)")))
    assert tried(h) == ["v2"]
    h.answer(2, 486)
    finished(h)
    assert outcomes(h) == ["dns_failure", "failed"]


def test_a_resolve_answering_after_the_caller_left_is_ignored() -> None:
    h = dns_call(Plan(missing=(("vendor.test", "A"),)))
    h.feed(CallerCancel())
    assert h.caller_statuses == [100, 487]
    h.feed(VendorResolved(h.ctx.gateways[0], Plan(targets=(T1,))))
    assert h.call.attempts == []
    finished(h)
    assert h.cdr.termination_reason == "caller CANCEL"


# -- races ----------------------------------------------------------------------------------


def test_a_200_racing_the_callers_cancel_is_acked_then_hung_up() -> None:
    h = make(*gws(2))
    h.answer(1, 180)
    h.advance(2)
    h.feed(CallerCancel())
    assert cancelled(h) == [1]
    assert h.caller_statuses == [100, 180, 487]
    assert h.ctx.occupied[1] == 0  # the call is over: its capacity is back
    h.advance(0.1)
    h.answer(1, 200, ANSWER)
    ack, = acks(h)
    assert ack.call_id == h.call.attempts[0].dialog.call_id  # type: ignore[union-attr]
    assert ack.cseq.number == 1
    bye, = byes(h, Side.CALLEE)
    assert bye.call_id == ack.call_id
    assert byes(h, Side.CALLER) == []
    assert h.caller_statuses == [100, 180, 487]  # nothing more for the caller
    assert tried(h) == ["v1"]
    finished(h)
    assert (h.cdr.final_code, h.cdr.hangup_by, h.cdr.termination_reason) == (
        487, "caller", "caller CANCEL")
    assert h.cdr.answer_at is None and h.cdr.duration == 0
    assert outcomes(h) == ["cancelled"]


def test_a_cancel_before_any_provisional_waits_for_the_first_one() -> None:
    h = make(*gws(2))
    h.feed(CallerCancel())
    assert h.caller_statuses == [100, 487]
    assert h.ledger.cancels == []  # RFC 3261 9.1: not before a provisional
    finished(h)
    h.answer(1, 100)
    assert cancelled(h) == [1]
    h.answer(1, 180)
    assert cancelled(h) == [1]  # once
    h.answer(1, 487)
    assert h.caller_statuses == [100, 487]
    finished(h)


def test_a_cancel_before_any_provisional_then_a_200_is_acked_and_hung_up() -> None:
    h = make(*gws(1))
    h.feed(CallerCancel())
    h.answer(1, 200, ANSWER)
    assert h.ledger.cancels == []
    assert len(acks(h)) == 1 and len(byes(h, Side.CALLEE)) == 1
    finished(h)


def test_an_abandoned_attempt_frees_its_capacity_32s_later_without_an_answer() -> None:
    h = make(*gws(2, ringing_timeout=2))
    h.answer(1, 180)
    h.advance(2)
    assert cancelled(h) == [1] and tried(h) == ["v1", "v2"]
    assert h.ctx.occupied == {1: 1, 2: 1}
    assert h.ledger.timers == {"release-1": START + 2 + 32}
    h.answer(2, 180)
    h.advance(31.9)
    assert h.ctx.occupied[1] == 1  # still waiting for the INVITE's final response
    h.advance(0.1)
    assert h.ctx.occupied == {1: 0, 2: 1}
    assert [a.destination.gateway.id for a in h.ledger.actions  # type: ignore[union-attr]
            if isinstance(a, Release)] == [1]
    h.answer(1, 487)  # very late: nothing released twice
    assert h.ctx.occupied == {1: 0, 2: 1}
    h.answer(2, 200, ANSWER)
    h.ack_from_caller()
    caller_bye(h)


def test_a_200_after_a_timer_abandoned_the_attempt_is_acked_and_hung_up() -> None:
    h = make(*gws(2), SS_SIP_TIMEOUT_RINGING=1)
    h.answer(1, 180)
    h.advance(1)
    assert cancelled(h) == [1]
    h.answer(2, 180)
    h.advance(0.5)
    h.answer(1, 200, ANSWER, to_tag="late")
    assert [a.call_id for a in acks(h)] == [h.call.attempts[0].dialog.call_id]  # type: ignore
    assert [b.call_id for b in byes(h, Side.CALLEE)] == [
        h.call.attempts[0].dialog.call_id]  # type: ignore[union-attr]
    assert "release-1" not in h.ledger.timers and h.ctx.occupied[1] == 0
    assert h.call.state is CallState.EARLY  # the call goes on with v2
    h.answer(2, 200, ANSWER)
    assert h.caller_statuses == [100, 180, 180, 200]
    h.ack_from_caller()
    caller_bye(h)
    assert outcomes(h) == ["ringing_timeout", "answered"]
    assert h.cdr.routing_gateway == "v2"


def test_a_retransmitted_2xx_is_acked_again_with_the_same_bytes() -> None:
    h = make(*gws(1))
    connect(h, 1)
    first, peer = h.ledger.sent[0]
    outbound = h.call.outbound
    assert outbound is not None
    again = make_response(h.invite_of(1), 200, to_tag="callee-tag")
    h.feed(StrayResponse(outbound.call_id, again))
    assert h.ledger.sent == [(first, peer), (first, peer)]
    # A stray non-2xx, a 2xx of another method or of an unknown leg: nothing.
    h.feed(StrayResponse(outbound.call_id, make_response(h.invite_of(1), 486, to_tag="t")))
    h.feed(StrayResponse("unknown", again))
    assert len(h.ledger.sent) == 2
    caller_bye(h)


def test_a_reply_for_an_unknown_token_and_a_stale_timer_are_ignored() -> None:
    h = make(*gws(1))
    response = make_response(h.invite_of(1), 180, to_tag="t")
    assert h.feed(Reply(99, response)) == []
    assert h.feed(NoReply(99)) == []
    assert h.feed(TimerFired("attempt-1")) == []  # not set
    assert h.caller_statuses == [100]
    h.feed(CallerCancel())
    h.feed(CallerCancel())  # the caller's CANCEL again: nothing more
    assert h.caller_statuses == [100, 487]
    finished(h)


# -- the caller's leg -----------------------------------------------------------------------


def test_the_answer_is_acked_and_relayed_to_the_caller() -> None:
    h = make(*gws(1))
    h.answer(1, 180)
    h.advance(3)
    actions = h.answer(1, 200, ANSWER)
    ack, = acks(h)
    assert ack.cseq.number == 1 and ack.body == b""
    ok = h.ledger.to_caller[-1]
    assert ok.status == 200 and ok.body == ANSWER
    assert ok.get("Contact") == h.call.inbound.contact
    assert ok.get("Allow")
    respond = next(a for a in actions if isinstance(a, Respond))
    assert respond.await_ack  # sent again until its ACK
    assert h.call.state is CallState.ANSWERED and h.ledger.notes == ["started", "answered"]
    assert h.call.committed
    assert h.ledger.confirmed == 0
    h.ack_from_caller()
    assert state(h) is CallState.CONFIRMED
    assert h.ledger.confirmed == 1  # the 200 is no longer sent again
    caller_bye(h)


def test_a_bye_from_the_caller_before_its_ack_ends_the_call() -> None:
    h = make(*gws(1))
    h.answer(1, 200, ANSWER)
    assert h.call.state is CallState.ANSWERED
    h.advance(4)
    server, _ = h.in_dialog(Side.CALLER, "BYE")
    assert [r.status for r in responses_on(h, server)] == [200]
    assert len(byes(h, Side.CALLEE)) == 1 and byes(h, Side.CALLER) == []
    finished(h)
    assert (h.cdr.hangup_by, h.cdr.termination_reason, h.cdr.duration) == (
        "caller", "caller BYE", 4)


def test_no_ack_from_the_caller_hangs_up_both_legs() -> None:
    h = make(*gws(1))
    h.answer(1, 200, ANSWER)
    h.advance(32)
    h.feed(NoAck())
    assert len(byes(h, Side.CALLER)) == 1 and len(byes(h, Side.CALLEE)) == 1
    finished(h)
    assert (h.cdr.final_code, h.cdr.hangup_by, h.cdr.termination_reason) == (
        200, "system", "no ACK from caller")
    assert h.cdr.duration == 32


def test_a_cancel_after_the_answer_changes_nothing() -> None:
    h = make(*gws(1))
    h.answer(1, 200, ANSWER)
    assert h.feed(CallerCancel()) == []  # the 200 went: too late to cancel
    assert h.call.state is CallState.ANSWERED and h.caller_statuses == [100, 200]
    h.ack_from_caller()
    caller_bye(h)
    assert h.cdr.termination_reason == "caller BYE"


def test_no_ack_after_the_ack_does_nothing() -> None:
    h = make(*gws(1))
    connect(h, 1)
    assert h.feed(NoAck()) == []
    assert h.call.state is CallState.CONFIRMED
    caller_bye(h)


def test_a_late_offer_reaches_the_vendor_in_the_ack() -> None:
    h = make(*gws(1), invite=invite_request(body=b""))
    assert h.invite_of(1).body == b""
    h.answer(1, 200, OFFER.replace(b"192.0.2.10", b"203.0.113.5"))
    assert acks(h) == []  # the vendor's ACK waits for the caller's answer
    assert h.ledger.to_caller[-1].body.startswith(b"v=0")
    h.ack_from_caller(ANSWER)
    ack, = acks(h)
    assert ack.body == ANSWER and ack.cseq.number == 1
    assert ack.call_id == h.call.outbound.call_id  # type: ignore[union-attr]
    caller_bye(h)


def test_a_bye_from_the_caller_while_ringing_is_a_cancel() -> None:
    h = make(*gws(1))
    h.answer(1, 180)
    h.in_dialog(Side.CALLER, "BYE")
    assert h.caller_statuses == [100, 180, 487]
    assert cancelled(h) == [1]
    finished(h)
    assert h.cdr.termination_reason == "caller CANCEL"


# -- in-dialog requests ---------------------------------------------------------------------


def test_a_reinvite_is_relayed_and_its_ack_turned_into_one_on_the_other_leg() -> None:
    h = make(*gws(1))
    connect(h, 1)
    hold = OFFER.replace(b"m=audio", b"a=sendonly\r\nm=audio")
    server, _ = h.in_dialog(Side.CALLER, "INVITE", hold, cseq=5)
    token = last_token(h)
    relayed_invite = h.ledger.requests[token]
    assert relayed_invite.method == "INVITE" and relayed_invite.body == hold
    assert relayed_invite.call_id == h.call.outbound.call_id  # type: ignore[union-attr]
    h.reply_to(token, 100)
    assert responses_on(h, server) == []
    h.reply_to(token, 200, ANSWER)
    ok, = responses_on(h, server)
    assert ok.status == 200 and ok.body == ANSWER
    assert ok.get("Contact") == h.call.inbound.contact
    sent_before = len(h.ledger.sent)
    ack = Request("ACK", "sip:us@198.51.100.1", [
        ("Call-ID", h.invite.call_id), ("CSeq", "5 ACK"), ("Content-Length", "0")])
    h.feed(AckReceived(Side.CALLER, ack))
    assert len(h.ledger.sent) == sent_before + 1
    relayed_ack = acks(h)[-1]
    assert relayed_ack.call_id == relayed_invite.call_id
    assert relayed_ack.cseq.number == relayed_invite.cseq.number
    # the exchange is over: another re-INVITE is relayed
    h.in_dialog(Side.CALLER, "INVITE", OFFER, cseq=6)
    assert h.ledger.requests[last_token(h)].method == "INVITE"
    caller_bye(h)


def test_a_reinvite_from_the_callee_is_relayed_to_the_caller() -> None:
    h = make(*gws(1))
    connect(h, 1)
    server, _ = h.in_dialog(Side.CALLEE, "INVITE", ANSWER)
    token = last_token(h)
    to_caller = h.ledger.requests[token]
    assert to_caller.call_id == h.invite.call_id and to_caller.body == ANSWER
    h.reply_to(token, 200, OFFER)
    ok, = responses_on(h, server)
    assert ok.status == 200
    outbound = h.call.outbound
    assert outbound is not None and ok.get("Contact") == outbound.contact
    ack = Request("ACK", "sip:us@198.51.100.1", [
        ("Call-ID", outbound.call_id), ("CSeq", "2 ACK"), ("Content-Length", "0")])
    h.feed(AckReceived(Side.CALLEE, ack))
    relayed_ack = acks(h)[-1]
    assert relayed_ack.call_id == h.invite.call_id
    assert relayed_ack.cseq.number == to_caller.cseq.number
    h.in_dialog(Side.CALLEE, "BYE")
    finished(h)
    assert (h.cdr.hangup_by, h.cdr.termination_reason) == ("callee", "callee BYE")


@pytest.mark.parametrize("second_side", [Side.CALLER, Side.CALLEE])
def test_a_reinvite_while_one_is_pending_gets_491(second_side: Side) -> None:
    h = make(*gws(1))
    connect(h, 1)
    h.in_dialog(Side.CALLER, "INVITE", OFFER, cseq=3)
    requests = len(h.ledger.requests)
    server, _ = h.in_dialog(second_side, "INVITE", OFFER, cseq=4)
    assert [r.status for r in responses_on(h, server)] == [491]
    assert len(h.ledger.requests) == requests  # not relayed
    caller_bye(h)


def test_a_rejected_reinvite_frees_the_way_for_the_next() -> None:
    h = make(*gws(1))
    connect(h, 1)
    server, _ = h.in_dialog(Side.CALLER, "INVITE", OFFER, cseq=3)
    h.reply_to(last_token(h), 488)
    assert [r.status for r in responses_on(h, server)] == [488]
    server, _ = h.in_dialog(Side.CALLER, "INVITE", OFFER, cseq=4)
    assert responses_on(h, server) == []
    assert h.ledger.requests[last_token(h)].method == "INVITE"
    caller_bye(h)


def test_an_ack_for_no_pending_reinvite_does_nothing() -> None:
    h = make(*gws(1))
    connect(h, 1)
    sent = len(h.ledger.sent)
    h.ack_from_caller()  # a retransmitted ACK of the first 200
    h.in_dialog(Side.CALLER, "INVITE", OFFER, cseq=3)
    ack = Request("ACK", "sip:us@198.51.100.1", [
        ("Call-ID", h.invite.call_id), ("CSeq", "3 ACK"), ("Content-Length", "0")])
    h.feed(AckReceived(Side.CALLER, ack))  # before the answer came
    assert len(h.ledger.sent) == sent
    caller_bye(h)


def test_the_ack_of_a_relayed_reinvite_has_that_invites_cseq() -> None:
    """RFC 3261 13.2.2.4: the ACK's CSeq number is the INVITE's, whatever was sent on
    the leg since (here the caller's INFO, relayed before its ACK)."""
    h = make(*gws(1))
    connect(h, 1)
    h.in_dialog(Side.CALLER, "INVITE", OFFER, cseq=3)
    invite_token = last_token(h)
    relayed_invite = h.ledger.requests[invite_token]
    h.reply_to(invite_token, 200, ANSWER)
    h.in_dialog(Side.CALLER, "INFO", b"", cseq=4)
    ack = Request("ACK", "sip:us@198.51.100.1", [
        ("Call-ID", h.invite.call_id), ("CSeq", "3 ACK"), ("Content-Length", "0")])
    h.feed(AckReceived(Side.CALLER, ack))
    assert acks(h)[-1].cseq.number == relayed_invite.cseq.number
    caller_bye(h)


@pytest.mark.parametrize("method", ["INFO", "UPDATE", "OPTIONS", "MESSAGE", "NOTIFY"])
@pytest.mark.parametrize("side", [Side.CALLER, Side.CALLEE])
def test_other_in_dialog_requests_are_relayed_with_their_answer(method: str, side: Side
                                                                ) -> None:
    h = make(*gws(1))
    connect(h, 1)
    body = b"Signal=5\r\nDuration=160\r\n"
    server, _ = h.in_dialog(side, method, body)
    token = last_token(h)
    relayed_request = h.ledger.requests[token]
    other_call_id = (h.call.outbound.call_id  # type: ignore[union-attr]
                     if side is Side.CALLER else h.invite.call_id)
    assert relayed_request.method == method and relayed_request.call_id == other_call_id
    assert relayed_request.body == body
    response = make_response(relayed_request, 200, to_tag="x")
    response.add("Content-Type", "application/dtmf-relay")
    response.body = b"ok"
    h.feed(Reply(token, response))
    ok, = responses_on(h, server)
    assert ok.status == 200 and ok.body == b"ok"
    assert ok.get("Content-Type") == "application/dtmf-relay"
    assert (ok.get("Contact") is not None) == (method == "UPDATE")
    caller_bye(h)


def test_a_relayed_info_carries_its_headers() -> None:
    h = make(*gws(1))
    connect(h, 1)
    request = Request("INFO", "sip:us@198.51.100.1", [
        ("Call-ID", h.invite.call_id), ("CSeq", "7 INFO"),
        ("Info-Package", "dtmf"), ("Content-Disposition", "Info-Package"),
        ("Content-Type", "application/dtmf"), ("X-Private", "no")], b"5")
    server = cast(Any, object())
    h.feed(InDialogRequest(Side.CALLER, request, server))
    h._cseqs[Side.CALLER] = 7  # the caller's next request follows its CSeq 7
    relayed_request = h.ledger.requests[last_token(h)]
    assert relayed_request.get("Info-Package") == "dtmf"
    assert relayed_request.get("Content-Disposition") == "Info-Package"
    assert relayed_request.get("Content-Type") == "application/dtmf"
    assert relayed_request.get("X-Private") is None
    caller_bye(h)


@pytest.mark.parametrize("method", ["REFER", "SUBSCRIBE", "PUBLISH", "PRACK"])
def test_an_unknown_method_gets_501(method: str) -> None:
    h = make(*gws(1))
    connect(h, 1)
    requests = len(h.ledger.requests)
    server, _ = h.in_dialog(Side.CALLER, method)
    assert [r.status for r in responses_on(h, server)] == [501]
    assert len(h.ledger.requests) == requests
    caller_bye(h)


@pytest.mark.parametrize("method", ["INFO", "INVITE"])
def test_a_relayed_request_without_an_answer_gets_408(method: str) -> None:
    h = make(*gws(1))
    connect(h, 1)
    server, _ = h.in_dialog(Side.CALLER, method, OFFER if method == "INVITE" else b"")
    h.feed(NoReply(last_token(h)))
    assert [r.status for r in responses_on(h, server)] == [408]
    assert h.call.state is CallState.CONFIRMED  # the call goes on
    server, _ = h.in_dialog(Side.CALLER, method, OFFER if method == "INVITE" else b"",
                            cseq=9)
    assert responses_on(h, server) == []  # relayed: no 491 left behind
    caller_bye(h)


def test_an_in_dialog_request_before_the_other_leg_exists_gets_481() -> None:
    h = make(*gws(1))
    server, _ = h.in_dialog(Side.CALLER, "INFO")
    assert [r.status for r in responses_on(h, server)] == [481]
    h.answer(1, 180)
    server, _ = h.in_dialog(Side.CALLER, "INFO")  # the early dialog relays it
    assert responses_on(h, server) == []
    h.feed(CallerCancel())
    finished(h)


def test_a_callee_bye_before_the_answer_changes_nothing_for_the_caller() -> None:
    h = make(*gws(1))
    h.answer(1, 183)
    server, _ = h.in_dialog(Side.CALLEE, "BYE")
    assert [r.status for r in responses_on(h, server)] == [200]
    assert h.call.state is CallState.EARLY
    h.answer(1, 200, ANSWER)
    h.ack_from_caller()
    caller_bye(h)


def test_an_offer_with_more_streams_grows_the_relay_first() -> None:
    h = relayed(vendor(1, "44"))
    connect(h, 1)
    video = OFFER + b"m=video 4002 RTP/AVP 96\r\n"
    _server, actions = h.in_dialog(Side.CALLER, "INVITE", video)
    grow, = [a for a in actions if isinstance(a, GrowMedia)]
    assert grow.count == 1 and h.ledger.media[-1] == "grow 1"
    assert not any(isinstance(a, Transact) for a in actions)
    h.ledger.media_updates.clear()
    h.feed(MediaGrown(grow.token, ports=[(40004, 40006)]))
    # The new stream gets the destination's settings, then the offer's addresses.
    assert h.ledger.media_updates[:3] == [
        SetNat(1, "b", False), SetCipher(1, "a", None), SetCipher(1, "b", None)]
    assert SetRemote(1, "a", "192.0.2.10", 4002) in h.ledger.media_updates
    relayed_invite = h.ledger.requests[last_token(h)]
    assert relayed_invite.method == "INVITE"
    assert relayed_invite.body.endswith(
        b"c=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 40002 RTP/AVP 0\r\n"
        b"m=video 40006 RTP/AVP 96\r\n")
    assert h.feed(MediaGrown(grow.token, ports=[(1, 2)])) == []  # once
    caller_bye(h)


def test_a_relayed_answer_after_the_hang_up_changes_no_relay_session() -> None:
    """A re-INVITE relayed to the destination, the call hung up, then its 18x with SDP:
    relayed back, but the relay (closing) gets no update."""
    h = relayed(vendor(1, "44"))
    connect(h, 1)
    video = OFFER + b"m=video 4002 RTP/AVP 96\r\n"
    _server, actions = h.in_dialog(Side.CALLER, "INVITE", video)
    grow, = [a for a in actions if isinstance(a, GrowMedia)]
    h.feed(MediaGrown(grow.token, ports=[(40004, 40006)]))
    relayed_token = last_token(h)
    h.feed(HangUp("operator"))
    ended = len(h.ledger.actions)
    answer = ANSWER + b"m=video 5002 RTP/AVP 96\r\n"
    after = h.reply_to(relayed_token, 180, answer)
    assert not any(isinstance(a, UpdateMedia) for a in after), after
    assert any(isinstance(a, WriteCdr) for a in h.ledger.actions[:ended])


def test_streams_past_the_cap_are_declined_without_growing() -> None:
    h = relayed(vendor(1, "44"))
    connect(h, 1)
    media = h.call.media
    assert media is not None
    media.grow(MAX_STREAMS)  # the cap reached (bound or not)
    video = OFFER + b"m=video 4002 RTP/AVP 96\r\n"
    _server, actions = h.in_dialog(Side.CALLER, "INVITE", video)
    assert not any(isinstance(a, GrowMedia) for a in actions)
    assert h.ledger.requests[last_token(h)].body.endswith(b"m=video 0 RTP/AVP 96\r\n")
    caller_bye(h)


def test_an_offer_whose_streams_could_not_grow_is_relayed_anyway() -> None:
    h = relayed(vendor(1, "44"))
    connect(h, 1)
    offer = OFFER + b"m=video 4002 RTP/AVP 96\r\nm=image 4004 udptl t38\r\n"
    _server, actions = h.in_dialog(Side.CALLER, "UPDATE", offer)
    grow, = [a for a in actions if isinstance(a, GrowMedia)]
    assert grow.count == 2
    h.feed(MediaGrown(grow.token, error="no free port pair"))
    media = h.call.media
    assert media is not None and len(media.streams) == 1  # the two not bound: dropped
    relayed_update = h.ledger.requests[last_token(h)]
    assert relayed_update.method == "UPDATE"
    assert relayed_update.body.endswith(b"m=video 0 RTP/AVP 96\r\nm=image 0 udptl t38\r\n")
    caller_bye(h)


def test_an_offer_growing_while_the_call_ends_gets_481() -> None:
    h = relayed(vendor(1, "44"))
    connect(h, 1)
    server, actions = h.in_dialog(Side.CALLER, "INVITE",
                                  OFFER + b"m=video 4002 RTP/AVP 96\r\n")
    grow, = [a for a in actions if isinstance(a, GrowMedia)]
    h.in_dialog(Side.CALLEE, "BYE")
    h.feed(MediaGrown(grow.token, ports=[(40004, 40006)]))
    assert [r.status for r in responses_on(h, server)] == [481]
    finished(h)


# -- session refresh ------------------------------------------------------------------------


@pytest.mark.parametrize(("caller_se", "callee_se", "caller_every", "callee_every"), [
    (None, None, 7200, 7200),
    ("1800", None, 300, 7200),  # capped at SS_SIP_SESSION_TTL 600, refreshed every half
    (None, "400;refresher=uac", 7200, 200),
    ("60", "30", 45, 45),  # never under Min-SE 90
])
def test_after_the_answer_each_leg_has_its_refresh_timer(
        caller_se: str | None, callee_se: str | None, caller_every: float,
        callee_every: float) -> None:
    extra = f"Session-Expires: {caller_se}\r\nSupported: timer\r\n" if caller_se else ""
    h = make(*gws(1), invite=invite_request(extra=extra))
    invite = h.invite_of(1)
    assert invite.get("Session-Expires") == "600;refresher=uac"
    assert invite.get("Min-SE") == "90" and invite.get("Supported") == "timer"
    h.advance(2)
    headers = (("Session-Expires", callee_se),) if callee_se else ()
    connect(h, 1, headers=headers)
    assert h.ledger.timers == {"refresh-caller": START + 2 + caller_every,
                               "refresh-callee": START + 2 + callee_every}
    ok = h.ledger.to_caller[-1]
    if caller_se:
        expires = max(90, min(int(caller_se), 600))
        assert ok.get("Session-Expires") == f"{expires};refresher=uas"
        assert ok.get("Require") == "timer"
    else:
        assert ok.get("Session-Expires") is None
    caller_bye(h)


def refreshed_call(callee_headers: tuple[tuple[str, str], ...] = ()) -> CallHarness:
    """A confirmed call: the caller has no session timer (re-INVITE every 7200 s, its
    INVITE has no Allow), the callee's refresh is due after 60 s."""
    h = make(*gws(1), SS_SIP_SESSION_UPDATE_SEGMENT=5, SS_SIP_SESSION_TTL=300)
    connect(h, 1, headers=(("Session-Expires", "300"), *callee_headers))
    assert h.ledger.timers["refresh-callee"] == START + 60
    return h


def test_a_refresh_is_an_update_when_the_peer_allows_it() -> None:
    h = refreshed_call((("Allow", "INVITE, ACK, BYE, CANCEL, UPDATE"),))
    h.advance(60)
    update = h.ledger.requests[last_token(h)]
    assert update.method == "UPDATE" and update.body == b""
    assert update.call_id == h.call.outbound.call_id  # type: ignore[union-attr]
    assert update.get("Session-Expires") == "120;refresher=uac"
    h.reply_to(last_token(h), 200)
    assert h.ledger.timers["refresh-callee"] == START + 120
    assert acks(h)[1:] == []  # no ACK for an UPDATE
    caller_bye(h)


def test_a_refresh_is_a_reinvite_with_the_last_sdp_otherwise() -> None:
    h = refreshed_call()
    h.advance(60)
    token = last_token(h)
    reinvite = h.ledger.requests[token]
    assert reinvite.method == "INVITE" and reinvite.body == OFFER
    assert reinvite.get("Content-Type") == "application/sdp"
    h.reply_to(token, 200, ANSWER)
    ack = acks(h)[-1]
    assert ack.cseq.number == reinvite.cseq.number and ack.call_id == reinvite.call_id
    assert h.ledger.timers["refresh-callee"] == START + 120
    h.advance(60)
    assert last_token(h) == token + 1  # the next refresh on schedule
    caller_bye(h)


def test_the_callers_leg_is_refreshed_by_reinvite_without_session_timer() -> None:
    h = make(*gws(1), SS_SIP_NO_TIMER_REINVITE_INTERVAL=60)
    connect(h, 1)
    h.advance(60)
    tokens = sorted(h.ledger.requests)[-2:]
    requests = {h.ledger.requests[t].call_id: h.ledger.requests[t] for t in tokens}
    to_caller = requests[h.invite.call_id]
    assert to_caller.method == "INVITE" and to_caller.body == ANSWER
    assert to_caller.get("Session-Expires") is None
    for token in tokens:
        h.reply_to(token, 200)
    assert set(h.ledger.timers) == {"refresh-caller", "refresh-callee"}
    caller_bye(h)


@pytest.mark.parametrize(("answer", "why"), [
    (408, "callee 408"), (481, "callee 481"), (None, "callee no answer"),
])
def test_a_failed_refresh_ends_the_call(answer: int | None, why: str) -> None:
    h = refreshed_call()
    h.advance(60)
    token = last_token(h)
    if answer is None:
        h.advance(32)
        h.feed(NoReply(token))
    else:
        h.reply_to(token, answer)
    assert len(byes(h, Side.CALLER)) == 1 and len(byes(h, Side.CALLEE)) == 1
    finished(h)
    assert (h.cdr.hangup_by, h.cdr.termination_reason) == (
        "system", f"session refresh failed ({why})")
    assert h.cdr.final_code == 200


@pytest.mark.parametrize("answer", [491, 500, 404, 488])
def test_any_other_refresh_answer_keeps_the_call(answer: int) -> None:
    h = refreshed_call()
    h.advance(60)
    h.reply_to(last_token(h), 100)
    assert "refresh-callee" not in h.ledger.timers
    h.reply_to(last_token(h), answer)
    assert h.call.state is CallState.CONFIRMED
    assert h.ledger.timers["refresh-callee"] == START + 120
    assert len(acks(h)) == 1  # a non-2xx is ACKed by its transaction
    caller_bye(h)


def test_no_refresh_before_the_callers_ack() -> None:
    h = make(*gws(1))
    h.answer(1, 200, ANSWER, headers=(("Session-Expires", "90"),))
    requests = len(h.ledger.requests)
    # Fired by hand: with real timers the refresh (45 s at least) comes after Timer L.
    del h.ledger.timers["refresh-callee"]
    h.feed(TimerFired("refresh-callee"))
    assert len(h.ledger.requests) == requests
    h.ack_from_caller()
    caller_bye(h)


# -- media ----------------------------------------------------------------------------------


def test_a_relayed_call_crosses_its_sdp_through_the_relay() -> None:
    h = relayed(vendor(1, "44"))
    assert h.invite_of(1).body == RELAYED_OFFER
    # The destination's settings, then the caller's address: before the INVITE leaves.
    assert h.ledger.media_updates == [
        SetNat(0, "b", False), SetCipher(0, "a", None), SetCipher(0, "b", None),
        SetRemote(0, "a", "192.0.2.10", 4000)]
    update = next(i for i, a in enumerate(h.ledger.actions) if isinstance(a, UpdateMedia))
    invite = next(i for i, a in enumerate(h.ledger.actions) if isinstance(a, Transact))
    assert update < invite
    h.answer(1, 183, ANSWER)
    assert h.ledger.to_caller[-1].body == RELAYED_ANSWER
    assert h.ledger.media_updates[-1] == SetRemote(0, "b", "203.0.113.5", 5000)
    h.answer(1, 200, ANSWER)
    h.ack_from_caller()
    media = h.call.media
    assert media is not None and media.watch_at is None  # media_check none: no RTP check
    assert "media-check" not in h.ledger.timers
    caller_bye(h)
    assert h.call.snapshot()["media"] == {"relayed": True}
    assert h.ledger.media[-1] == "start"  # the CDR's write closes the sessions
    assert h.ledger.actions[-1].media is media  # type: ignore[union-attr]


def test_silent_rtp_ends_the_call() -> None:
    h = relayed(vendor(1, "44", media_check="both"), SS_MEDIA_CHECK_TIMEOUT=12)
    connect(h, 1)
    media = h.call.media
    assert media is not None and media.watch_at == START
    assert h.ledger.timers["media-check"] == START + 1
    h.advance(5)
    assert h.ledger.media_checks == 5
    h.idle = {"a": 0.5, "b": 30.0}  # nothing from the destination for 30 s...
    h.advance(6)
    assert h.call.state is CallState.CONFIRMED  # ...but the call is 11 s old
    h.advance(1)
    assert len(byes(h, Side.CALLER)) == 1 and len(byes(h, Side.CALLEE)) == 1
    finished(h)
    assert (h.cdr.hangup_by, h.cdr.termination_reason) == (
        "system", "RTP interruption (callee from_remote)")
    assert h.cdr.duration == 12


@pytest.mark.parametrize(("idle", "watched", "silent"), [
    ({"a": None, "b": None}, 29, False),  # nothing yet: counted from the answer
    ({"a": None, "b": None}, 30, True),
    ({"a": 40.0, "b": 29.0}, 40, False),  # to_remote of the caller: what "b" receives
    ({"a": 0.0, "b": 30.0}, 40, True),
    ({"a": 0.0, "b": 50.0}, 29, False),  # quiet longer than watched: the watch counts
])
def test_silence_is_counted_from_the_answer_at_the_longest(
        idle: dict[str, float | None], watched: float, silent: bool) -> None:
    h = relayed(vendor(1, "44", media_check="to_remote"))  # timeout: 30 s by default
    connect(h, 1)
    media = h.call.media
    assert media is not None
    assert (media.silent_direction({"a": "to_remote"}, 30.0, START + watched, idle)
            == ("caller to_remote" if silent else None))


def test_the_origins_media_check_is_checked_too() -> None:
    @dataclass
    class CheckingContext(LiveContext):
        def origin_media_check(self, origin: Origin) -> str:
            return "to_remote"

    ctx = CheckingContext(gateways=[vendor(1, "44")], relay=True)
    h = make(ctx=ctx, SS_MEDIAPROXYMODE="On")
    h.media_started()
    connect(h, 1)
    h.advance(1)
    assert h.ledger.media_checks == 1 and h.call.state is CallState.CONFIRMED
    h.idle = {"a": 0.0, "b": 31.0}  # what the caller's leg is sent: nothing for 31 s
    h.advance(28)
    assert h.call.state is CallState.CONFIRMED  # the call is 29 s old
    h.advance(1)
    finished(h)
    assert h.cdr.termination_reason == "RTP interruption (caller to_remote)"


def test_no_free_media_port_gives_the_caller_503() -> None:
    ctx = LiveContext(gateways=[vendor(1, "44")], relay=True)
    h = make(ctx=ctx, SS_MEDIAPROXYMODE="On")
    actions = h.feed(MediaStarted(error="no free port pair"))
    assert any(isinstance(a, StopMedia) for a in actions)
    assert h.ledger.media == ["start", "stop"]
    assert h.call.attempts == [] and h.call.media is None
    assert h.caller_statuses == [100, 503]
    finished(h)
    assert (h.cdr.hangup_by, h.cdr.termination_reason) == ("system", "no media port free")


def test_media_bound_after_the_caller_left_is_stopped() -> None:
    ctx = LiveContext(gateways=[vendor(1, "44")], relay=True)
    h = make(ctx=ctx, SS_MEDIAPROXYMODE="On")
    h.feed(CallerCancel())
    h.media_started()
    assert h.ledger.media == ["start", "stop"] and h.call.attempts == []
    h.feed(MediaStarted(error="late"))  # an error after the end: nothing more to the caller
    assert h.caller_statuses == [100, 487]
    finished(h)


def test_a_caller_without_sdp_is_not_relayed() -> None:
    ctx = LiveContext(gateways=[vendor(1, "44")], relay=True)
    h = make(ctx=ctx, invite=invite_request(body=b""), SS_MEDIAPROXYMODE="On")
    assert h.ledger.media == [] and tried(h) == ["v1"]
    h.feed(CallerCancel())
    finished(h)


# -- operator hang-up -----------------------------------------------------------------------


def test_an_operator_hang_up_before_the_answer() -> None:
    h = make(*gws(2))
    h.answer(1, 180)
    h.feed(HangUp("operator"))
    assert cancelled(h) == [1]
    assert h.caller_statuses == [100, 180, 503]
    finished(h)
    assert (h.cdr.final_code, h.cdr.hangup_by, h.cdr.termination_reason) == (
        503, "system", "operator")
    assert outcomes(h) == ["cancelled"]
    h.answer(1, 487)
    assert tried(h) == ["v1"]


def test_an_operator_hang_up_after_the_answer() -> None:
    h = make(*gws(1))
    connect(h, 1)
    h.advance(30)
    h.feed(HangUp("operator"))
    assert len(byes(h, Side.CALLER)) == 1 and len(byes(h, Side.CALLEE)) == 1
    finished(h)
    assert (h.cdr.final_code, h.cdr.hangup_by, h.cdr.termination_reason, h.cdr.duration) == (
        200, "system", "operator", 30)
    h.feed(HangUp("operator"))
    assert h.ledger.ended == 1


# -- lists ----------------------------------------------------------------------------------


def test_the_origins_lists_refuse_with_403() -> None:
    origin = dataclasses.replace(
        ORIGIN, numbers=NumberRules(callee_prefixes=PrefixRule(deny=("44",))))
    h = make(*gws(1), origin=origin)
    assert h.call.attempts == []
    assert h.caller_statuses == [100, 403]
    assert h.ctx.stats.refused_by_lists == 1
    finished(h)
    assert (h.cdr.final_code, h.cdr.hangup_by, h.cdr.termination_reason) == (
        403, "system", 'callee prefix "44" denied')


def test_a_routing_gateways_lists_skip_it_or_refuse_with_403() -> None:
    deny = NumberRules(callee_prefixes=PrefixRule(deny=("4420",)))
    h = make(vendor(1, "44", 0, numbers=deny), vendor(2, "44", 1))
    assert tried(h) == ["v2"]
    h.feed(CallerCancel())
    finished(h)
    h = make(vendor(1, "44", 0, numbers=deny))
    assert h.caller_statuses == [100, 403]
    finished(h)
    assert h.cdr.termination_reason == 'routing gateway "v1": callee prefix "4420" denied'


def test_group_lists_use_the_switchs_number_groups() -> None:
    ctx = LiveContext(gateways=gws(1))
    ctx.numbers.groups = NumberGroups({"fraud": ["1001"]})
    origin = dataclasses.replace(ORIGIN, numbers=NumberRules(
        caller_groups=GroupRule(("fraud",), "deny")))
    h = make(ctx=ctx, origin=origin)
    assert h.caller_statuses == [100, 403]
    finished(h)
    assert h.cdr.termination_reason == 'caller in deny group "fraud"'


# -- phones ---------------------------------------------------------------------------------


PHONE = Destination(Peer("udp", "192.0.2.50", 5062), "sip:alice@192.0.2.50:5062",
                    "<sip:4420@198.51.100.1>")


def test_a_registered_phones_number_goes_to_the_phone() -> None:
    ctx = LiveContext(gateways=gws(1), phones={"4420": (PHONE, 0, "")})
    h = make(ctx=ctx)
    assert tried(h) == [None] and peer_of(h, 1) == PHONE.peer
    assert str(h.invite_of(1).ruri) == "sip:alice@192.0.2.50:5062"
    connect(h, 1)
    h.in_dialog(Side.CALLEE, "BYE")
    finished(h)
    assert h.cdr.callee_phone == "4420" and h.cdr.routing_gateway is None


def test_a_phone_not_reachable_now_answers_with_its_code() -> None:
    ctx = LiveContext(gateways=gws(1), phones={"4420": (None, 480, "phone not registered")})
    h = make(ctx=ctx)
    assert h.call.attempts == [] and h.caller_statuses == [100, 480]
    finished(h)
    assert h.cdr.termination_reason == "phone not registered"
    assert h.cdr.callee_phone == "4420"  # the CDR names the phone it could not reach


def test_a_phones_attempt_fails_with_the_phones_code() -> None:
    ctx = LiveContext(phones={"4420": (PHONE, 0, "")})
    h = make(ctx=ctx)
    h.answer(1, 486)
    assert h.caller_statuses == [100, 486]
    finished(h)


# -- the CDR --------------------------------------------------------------------------------


def test_the_cdr_of_an_answered_call() -> None:
    h = make(*gws(2))
    h.advance(1)
    h.answer(1, 503)
    h.advance(2)
    h.answer(2, 100)
    h.advance(1)
    h.answer(2, 180)
    h.advance(5)
    h.answer(2, 183)
    h.advance(4)
    h.answer(2, 200, ANSWER)
    h.ack_from_caller()
    h.advance(61.5)
    h.in_dialog(Side.CALLEE, "BYE")
    finished(h)
    cdr = h.cdr
    assert cdr.start_at == START
    assert cdr.ringing_at == START + 4
    assert cdr.answer_at == START + 13
    assert cdr.end_at == START + 74.5
    assert cdr.duration == 61.5
    assert (cdr.final_code, cdr.final_reason) == (200, "OK")
    assert (cdr.hangup_by, cdr.termination_reason) == ("callee", "callee BYE")
    assert cdr.call_id_in == "in-1"
    assert cdr.call_id_out == h.call.attempts[1].dialog.call_id  # type: ignore[union-attr]
    assert (cdr.caller, cdr.callee) == ("1001", "4420")
    assert cdr.source == f"{CALLER.host}:{CALLER.port}"
    assert (cdr.mapping_gateway_id, cdr.mapping_gateway) == (1, "customer")
    assert (cdr.routing_gateway_id, cdr.routing_gateway) == (2, "v2")
    assert (cdr.caller_sent, cdr.callee_sent) == ("1001", "4420")
    first, second = h.attempt_records
    assert (first["seq"], first["outcome"], first["final_code"]) == (1, "failed", 503)
    assert first["first_provisional"] is None and first["first_provisional_at"] is None
    assert first["duration"] == 1 and first["start_at"] == START
    assert first["target"] == "203.0.113.1:5060"
    assert (second["seq"], second["outcome"], second["final_code"]) == (2, "answered", 200)
    assert second["first_provisional"] == 180  # never the 100
    assert second["first_provisional_at"] == START + 4
    assert second["start_at"] == START + 1 and second["duration"] == 12
    assert second["routing_gateway_id"] == 2
    assert second["call_id"] == cdr.call_id_out


def record_cancel(h: CallHarness) -> None:
    h.answer(1, 180)
    h.feed(CallerCancel())


def record_caller_bye(h: CallHarness) -> None:
    connect(h, 1)
    h.in_dialog(Side.CALLER, "BYE")


def record_callee_bye(h: CallHarness) -> None:
    connect(h, 1)
    h.in_dialog(Side.CALLEE, "BYE")


def record_vendor_failure(h: CallHarness) -> None:
    h.answer(1, 183, ANSWER)
    h.answer(1, 486)


def record_invite_timeout(h: CallHarness) -> None:
    h.silence(1)


def record_ringing_timer(h: CallHarness) -> None:
    h.answer(1, 183, ANSWER)
    h.advance(120)


def record_no_ack(h: CallHarness) -> None:
    h.answer(1, 200, ANSWER)
    h.feed(NoAck())


def record_refresh_failure(h: CallHarness) -> None:
    connect(h, 1, headers=(("Session-Expires", "90"),))
    h.advance(45)
    h.reply_to(last_token(h), 481)


def record_operator_early(h: CallHarness) -> None:
    h.answer(1, 180)
    h.feed(HangUp("operator"))


def record_operator_answered(h: CallHarness) -> None:
    connect(h, 1)
    h.feed(HangUp("operator"))


def record_all_failed(h: CallHarness) -> None:
    h.answer(1, 486)


@pytest.mark.parametrize(("scenario", "hangup_by", "why", "final_code", "outcome"), [
    (record_cancel, "caller", "caller CANCEL", 487, "cancelled"),
    (record_caller_bye, "caller", "caller BYE", 200, "answered"),
    (record_callee_bye, "callee", "callee BYE", 200, "answered"),
    (record_vendor_failure, "callee", "vendor 486 Busy Here", 486, "failed"),
    (record_invite_timeout, "system", "INVITE timeout", 408, "invite_timeout"),
    (record_ringing_timer, "system", "session progress sdp timeout", 408,
     "session_progress_sdp_timeout"),
    (record_no_ack, "system", "no ACK from caller", 200, "answered"),
    (record_refresh_failure, "system", "session refresh failed (callee 481)", 200,
     "answered"),
    (record_operator_early, "system", "operator", 503, "cancelled"),
    (record_operator_answered, "system", "operator", 200, "answered"),
    (record_all_failed, "callee", "every routing gateway failed", 486, "failed"),
], ids=lambda v: v.__name__.removeprefix("record_") if callable(v) else None)
def test_the_cdr_says_who_ended_the_call_and_why(
        scenario: Callable[[CallHarness], None], hangup_by: str, why: str, final_code: int,
        outcome: str) -> None:
    params: dict[Callable[[CallHarness], None], dict[str, Any]] = {
        record_invite_timeout: {"SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT": "On"},
        record_all_failed: {"SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY": "Off"},
    }
    h = make(*gws(1), **params.get(scenario, {}))
    scenario(h)
    finished(h)
    cdr = h.cdr
    assert (cdr.hangup_by, cdr.termination_reason, cdr.final_code) == (
        hangup_by, why, final_code)
    assert h.caller_statuses[-1] == final_code
    assert outcomes(h) == [outcome]
    assert cdr.routing_gateway == "v1"
    assert (cdr.answer_at is not None) == (final_code == 200)


def test_an_abandoned_attempt_is_recorded_when_the_call_ends_first() -> None:
    h = make(*gws(1))
    h.answer(1, 180)
    h.advance(3)
    h.feed(HangUp("shutdown"))
    finished(h)
    record, = h.attempt_records
    assert (record["outcome"], record["final_code"], record["duration"]) == (
        "cancelled", None, 3)


def test_the_start_note_and_the_snapshot() -> None:
    h = make(*gws(1))
    started = h.ledger.actions[0]
    assert isinstance(started, NoteStarted)
    assert started.record.cdr_uuid == h.call.cdr_uuid
    assert started.record.end_at == START and started.record.final_code == 0
    h.answer(1, 180)
    snapshot = h.call.snapshot()
    assert snapshot["state"] == "early" and snapshot["routing_gateway"] == "v1"
    assert snapshot["attempts"] == 1 and snapshot["ringing_at"] == START
    assert snapshot["media"] == {"relayed": False}
    h.feed(CallerCancel())
    finished(h)
    assert h.cdr.cdr_uuid == h.call.cdr_uuid


# -- the tables -----------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(CallState))
@pytest.mark.parametrize("step", list(CallStep))
def test_the_call_table_takes_its_moves_and_raises_on_any_other(state: CallState,
                                                                step: CallStep) -> None:
    if (state, step) in CALL_TRANSITIONS:
        assert next_call_state(state, step) is CALL_TRANSITIONS[state, step]
    else:
        with pytest.raises(CallProtocolError) as error:
            next_call_state(state, step)
        assert (error.value.state, error.value.step) == (state, step)
        assert state.value in str(error.value) and step.value in str(error.value)


@pytest.mark.parametrize(("state", "step"), [
    (CallState.ENDED, CallStep.END), (CallState.ROUTING, CallStep.ANSWER),
    (CallState.CONFIRMED, CallStep.ACK), (CallState.ANSWERED, CallStep.DIAL),
    (CallState.ENDED, CallStep.DIAL), (CallState.CONFIRMED, CallStep.PROGRESS),
])
def test_illegal_call_moves_raise(state: CallState, step: CallStep) -> None:
    with pytest.raises(CallProtocolError):
        next_call_state(state, step)


@pytest.mark.parametrize("state", list(AttemptState))
@pytest.mark.parametrize("event", list(AttemptEvent))
def test_the_attempt_table_takes_its_moves_and_raises_on_any_other(
        state: AttemptState, event: AttemptEvent) -> None:
    if (state, event) in ATTEMPT_TRANSITIONS:
        assert next_state(state, event) is ATTEMPT_TRANSITIONS[state, event]
    else:
        with pytest.raises(AttemptProtocolError) as error:
            next_state(state, event)
        assert (error.value.state, error.value.event) == (state, event)


def test_an_attempt_refuses_an_illegal_move() -> None:
    attempt = Attempt(1, PHONE, SwitchRules.resolve(Params(), None), START)
    with pytest.raises(AttemptProtocolError):
        attempt.answered(200, START)  # nothing was sent
    attempt.sent(1)
    with pytest.raises(AttemptProtocolError):
        attempt.hung_up()  # no dialog before an answer
    attempt.failed(500, START)
    with pytest.raises(AttemptProtocolError):
        attempt.provisional(180, START)
    assert attempt.outcome == "failed" and attempt.final_code == 500
    assert attempt.peer == PHONE.peer and attempt.gateway_name is None


# -- where the caller's leg is reached ------------------------------------------------------


@pytest.mark.parametrize(("contact", "nat", "reached_at"), [
    ("<sip:1001@192.0.2.10:5070>", False, Peer("udp", "192.0.2.10", 5070)),
    ("<sip:1001@10.0.0.12:5070>", True, CALLER),
    # a prefix of the source's address is not it
    ("<sip:1001@192.0.2.1:5070>", True, CALLER),
])
def test_a_callers_contact_elsewhere_than_its_source_is_behind_nat(
        contact: str, nat: bool, reached_at: Peer) -> None:
    invite = invite_request()
    invite.set("Contact", contact)
    assert Call.behind_nat(invite, CALLER) is nat
    h = make(*gws(1), invite=invite)
    connect(h, 1)
    h.feed(HangUp("operator"))
    bye, = byes(h, Side.CALLER)
    sent_to = next(a.peer for a in h.ledger.actions
                   if isinstance(a, Transact) and a.request is bye)
    assert sent_to == reached_at
    finished(h)


def test_set_timer_actions_name_the_attempt() -> None:
    h = make(*gws(1))
    actions = h.answer(1, 180)
    timers = [a for a in actions if isinstance(a, SetTimer)]
    assert [(t.name, t.delay) for t in timers] == [("attempt-1", 120)]
    h.feed(CallerCancel())
    assert not any(isinstance(a, Send) for a in h.ledger.actions)
    assert any(isinstance(a, CancelInvite) for a in h.ledger.actions)
    finished(h)


def test_the_vendor_leg_is_a_new_dialog_with_the_callers_number_and_name() -> None:
    pai = NumberRules(callee_dial_plan="44:0044", pai_dial_plan="*:+1")
    gateways = [vendor(1, "44", 0, numbers=pai),
                dataclasses.replace(vendor(2, "44", 1), transport="tcp", port=5070)]
    invite = invite_request()
    invite.set("From", '"Alice Smith" <sip:1001@192.0.2.10>;tag=caller-tag')
    invite.set("Max-Forwards", "12")
    h = make(*gateways, invite=invite)
    request = h.invite_of(1)
    assert request.call_id != h.invite.call_id
    assert request.from_.tag and request.from_.tag != "caller-tag"
    assert (request.get("From") or "").startswith('"Alice Smith" <sip:1001@198.51.100.1>')
    assert str(request.ruri) == "sip:004420@203.0.113.1:5060"
    assert request.get("P-Asserted-Identity") == "<sip:+11001@198.51.100.1>"
    assert request.get("Max-Forwards") == "11"
    assert request.get("Allow") and request.get("Contact")
    h.answer(1, 500)
    second = h.invite_of(2)
    assert str(second.ruri) == "sip:4420@203.0.113.2:5070;transport=tcp"
    assert second.get("P-Asserted-Identity") is None
    assert peer_of(h, 2) == Peer("tcp", "203.0.113.2", 5070)
    connect(h, 2)
    caller_bye(h)
    assert (h.cdr.caller_sent, h.cdr.callee_sent) == ("1001", "4420")
    assert h.attempt_records[0]["call_id"] == request.call_id


def test_provisionals_reach_the_caller_with_our_tag_and_contact() -> None:
    h = make(*gws(1))
    h.answer(1, 183, ANSWER)
    ringing = h.ledger.to_caller[-1]
    assert ringing.to.tag == h.call.inbound.local_tag
    assert ringing.get("Contact") == h.call.inbound.contact
    assert ringing.get("Content-Type") == "application/sdp"
    assert h.ledger.to_caller[0].get("Contact") is None  # our 100 creates no dialog
    h.answer(1, 200, ANSWER)
    assert h.ledger.to_caller[-1].to.tag == ringing.to.tag
    h.ack_from_caller()
    caller_bye(h)


def test_every_gateway_gone_while_the_media_was_bound_gives_503() -> None:
    ctx = LiveContext(gateways=[vendor(1, "44")], relay=True)
    h = make(ctx=ctx, SS_MEDIAPROXYMODE="On")
    ctx.gateways[0] = dataclasses.replace(ctx.gateways[0], enabled=False)
    h.media_started()
    assert h.call.attempts == [] and h.caller_statuses == [100, 503]
    finished(h)
    assert (h.cdr.hangup_by, h.cdr.termination_reason) == (
        "system", "every matching routing gateway is disabled, full or unavailable")


def test_a_refresh_answered_after_the_call_ended_changes_nothing() -> None:
    h = refreshed_call()
    h.advance(60)
    token = last_token(h)
    h.in_dialog(Side.CALLER, "BYE")
    finished(h)
    h.reply_to(token, 200, ANSWER)
    assert acks(h)[-1].cseq.number == h.ledger.requests[token].cseq.number  # 2xx: ACKed
    finished(h)
    assert h.cdr.termination_reason == "caller BYE"


@pytest.mark.parametrize("answer", [481, None])
def test_a_refresh_failing_after_the_call_ended_changes_nothing(answer: int | None) -> None:
    h = refreshed_call()
    h.advance(60)
    token = last_token(h)
    h.in_dialog(Side.CALLEE, "BYE")
    caller_byes = len(byes(h, Side.CALLER))
    if answer is None:
        h.feed(NoReply(token))
    else:
        h.reply_to(token, answer)
    assert len(byes(h, Side.CALLER)) == caller_byes
    finished(h)
    assert h.cdr.termination_reason == "callee BYE"


def test_a_caller_without_a_from_tag_gets_no_bye() -> None:
    invite = invite_request()
    invite.set("From", "<sip:1001@192.0.2.10>")
    h = make(*gws(1), invite=invite)
    h.answer(1, 200, ANSWER)
    h.feed(NoAck())
    assert byes(h, Side.CALLER) == [] and len(byes(h, Side.CALLEE)) == 1
    finished(h)


def test_a_2xx_without_a_to_tag_racing_a_cancel_is_acked_but_not_hung_up() -> None:
    h = make(*gws(1))
    h.feed(CallerCancel())
    request = h.invite_of(1)
    untagged = make_response(request, 200)
    h.feed(Reply(h.call.attempts[0].token, untagged))
    assert len(acks(h)) == 1
    assert byes(h, Side.CALLEE) == []  # no dialog to hang up
    finished(h)


@pytest.mark.parametrize(("source", "extra", "contact", "reached_at"), [
    # over TCP: always on the caller's connection
    (Peer("tcp", "192.0.2.10", 40000), "", "<sip:1001@192.0.2.10:5060;transport=tcp>",
     Peer("tcp", "192.0.2.10", 40000)),
    # behind NAT but record-routed: through its proxy
    (CALLER, "Record-Route: <sip:192.0.2.200;lr>\r\n", "<sip:1001@10.0.0.12:5060>",
     Peer("udp", "192.0.2.200", 5060)),
], ids=["tcp", "record-routed"])
def test_where_requests_to_the_caller_go(source: Peer, extra: str, contact: str,
                                         reached_at: Peer) -> None:
    invite = invite_request(extra=extra)
    invite.set("Contact", contact)
    h = make(*gws(1), invite=invite, source=source)
    connect(h, 1)
    h.feed(HangUp("operator"))
    bye, = byes(h, Side.CALLER)
    sent_to = next(a.peer for a in h.ledger.actions
                   if isinstance(a, Transact) and a.request is bye)
    assert sent_to == reached_at
    finished(h)


def test_a_callee_bye_before_the_callers_ack_waits_for_it() -> None:
    """RFC 3261 15: the callee's UA (we, on the caller's leg) MUST NOT send a BYE on a
    confirmed dialog until it has received an ACK for its 2xx (or its transaction timed
    out)."""
    h = make(*gws(1))
    h.answer(1, 200, ANSWER)
    server, _ = h.in_dialog(Side.CALLEE, "BYE")
    assert [r.status for r in responses_on(h, server)] == [200]
    assert byes(h, Side.CALLER) == []  # not before the caller's ACK
    h.ack_from_caller()
    assert len(byes(h, Side.CALLER)) == 1
    finished(h)
    assert (h.cdr.hangup_by, h.cdr.termination_reason) == ("callee", "callee BYE")


def test_no_refresh_reinvite_while_a_relayed_reinvite_is_in_progress_on_that_leg() -> None:
    """RFC 3261 14.1: no new INVITE transaction in a dialog while another one is in
    progress in either direction."""
    h = refreshed_call()
    h.advance(59)
    h.in_dialog(Side.CALLER, "INVITE", OFFER, cseq=3)
    relayed_token = last_token(h)
    h.advance(1)  # the callee's refresh falls due meanwhile
    outbound = h.call.outbound
    assert outbound is not None
    invites = [r for t, r in h.ledger.requests.items()
               if t > relayed_token and r.method == "INVITE" and r.call_id == outbound.call_id]
    assert invites == []
    h.in_dialog(Side.CALLER, "BYE")
    finished(h)
