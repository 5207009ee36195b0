"""The call core (b2bua/calls/call.py) under random event orders, legal and illegal.

A hypothesis state machine starts one call on two or three vendors of one prefix, with
random switching rules (docs/failover.md: timers, commits, stop codes, switch limit,
until-connect), DNS plans (an address, two SRV targets, a cold cache, no such name),
capacities, liveness settings, an early or a late offer, and a relayed or direct media
path, then feeds it what a network, the transaction layer, the relay, an operator and a
clock could: any attempt (old ones too) answering any status, with or without SDP or
Retry-After, again and late; Timer B; timers firing in order; the caller's CANCEL, ACK
and BYE; re-INVITE, INFO, UPDATE, REFER and BYE from either side, in order or with an
old CSeq, and from a destination the call already left; answers (or none) to what the
call relayed and to its refreshes; stray 2xx retransmissions; RTP starting, stopping;
relay ports bound or not; Timer L; an operator's hang-up; other calls filling a gateway.

Left out is only what our own stack never produces: a ``NoReply`` for an INVITE that
already had a response (Timer B stops at the first one, RFC 3261 17.1.1.2; the core
raises AttemptProtocolError for it), a ``TimerFired`` before its time, a second
``VendorResolved``/``MediaStarted``/``MediaGrown`` for one action.

Invariants, after every step and at teardown (an operator's hang-up, Timer L if the
caller had not ACKed our 200, 100 s of clock, a final response to every INVITE still
open, every other request of ours timed out):

* at most one CDR, exactly one once the call ended, and it says what the caller got;
  ``CallEnded`` at most once, exactly when the state is ENDED;
* capacity never negative, every Occupy released at most once, capacity is what the
  open attempts hold, an attempt given up holds it only until its release timer,
  nothing held once the call ended and every attempt had its final response;
* the core's timers are the ledger's; a switching timer only for the attempt the call
  waits on; no timer after the end;
* the caller's INVITE gets exactly one final response (200 at most once) and nothing
  after it; after the end nothing more on it and no new attempt: only answers to
  in-dialog requests, ACK and BYE of a late 2xx, the CANCEL an INVITE given up before
  its first provisional still owes, Release, closing relay ports bound too late;
* the call's state moves only along ``call_state.TRANSITIONS``;
* an INVITE is CANCELled at most once; every in-dialog request gets exactly one final
  response; a request with an old CSeq only gets 500; one from a leg the call left
  neither reaches the other leg nor changes the call;
* RFC 3261: no second INVITE in a dialog while one of ours is in progress there (14.1);
  every ACK acknowledges an INVITE we sent in that dialog, and every 2xx a destination
  sent is ACKed, before any BYE on its leg (13.2.2.4); no BYE to the caller before its
  ACK of our 200 unless Timer L fired (15).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from callharness import (
    ANSWER,
    OFFER,
    CallHarness,
    Context,
    destination_key,
    invite_request,
    server_for,
    vendor,
)
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from b2bua.calls.actions import (
    CallAction,
    CallEnded,
    CancelInvite,
    Confirm,
    ForgetLeg,
    GrowMedia,
    Occupy,
    Release,
    Respond,
    Send,
    SetTimer,
    StartMedia,
    StopMedia,
    Transact,
    WriteCdr,
)
from b2bua.calls.attempt import Attempt
from b2bua.calls.attempt_state import AttemptState
from b2bua.calls.call import Call
from b2bua.calls.call_state import TRANSITIONS, CallState
from b2bua.calls.events import (
    AckReceived,
    CallerCancel,
    CallEvent,
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
from b2bua.config.live import Params
from b2bua.routing.dns import Plan, Target
from b2bua.routing.gateways import RoutingGateway
from b2bua.sip.message import Request, make_response
from b2bua.sip.parser import parse_message
from b2bua.sip.transaction import ServerTransaction

# -- the call's world ------------------------------------------------------------------------


def reachable(state: CallState) -> set[CallState]:
    """The states ``TRANSITIONS`` leads to from ``state`` in any number of steps."""
    seen, todo = {state}, [state]
    while todo:
        here = todo.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is here and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


REACHABLE = {state: reachable(state) for state in CallState}


class MachineHarness(CallHarness):
    """``CallHarness`` with a trail of what each event did (the call's state before it,
    the event, the actions) and the call's state after ``begin`` and after each event."""

    def __init__(self, ctx: Context, invite: Request) -> None:
        self.trail: list[tuple[CallState, CallEvent, list[CallAction]]] = []
        self.states = [CallState.ROUTING]
        self.answered: set[int] = set()  # attempts whose INVITE had a 2xx, by seq
        super().__init__(ctx, invite)
        self.states.append(self.call.state)
        self.begun = list(self.ledger.actions)  # what ``begin`` did

    def feed(self, event: CallEvent) -> list[CallAction]:
        before = self.call.state
        if isinstance(event, Reply) and 200 <= event.response.status < 300:
            self.answered.update(a.seq for a in self.call.attempts
                                 if a.token == event.token and a.pending)
        actions = super().feed(event)
        self.trail.append((before, event, actions))
        self.states.append(self.call.state)
        return actions


@dataclass(frozen=True)
class Setup:
    gateways: tuple[RoutingGateway, ...]
    plans: tuple[str, ...]  # per gateway: ip | two | cold | none
    params: tuple[tuple[str, Any], ...]
    offer: bool  # the caller's INVITE carries SDP (else: late offer)
    session_timer: bool  # the caller's INVITE asks for a session timer
    teardown_final: int  # the final response every open INVITE gets at teardown
    relay: bool  # the media is relayed (SS_MEDIAPROXYMODE On, a fake relay session)

    def __repr__(self) -> str:
        gws = []
        for gw in self.gateways:
            own = {k: getattr(gw, k) for k in OVERRIDES
                   if getattr(gw, k) not in (0, None, (), True, "none")}
            gws.append(f"v{gw.id}(priority={gw.priority}, {own})")
        params = {k[3:]: v for k, v in self.params}
        return (f"Setup({', '.join(gws)}, plans={self.plans}, {params}, offer={self.offer}, "
                f"session_timer={self.session_timer}, relay={self.relay}, "
                f"teardown_final={self.teardown_final})")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


OVERRIDES = ("media_check", "capacity", "invite_timeout", "trying_timeout",
             "session_progress_timeout", "session_progress_sdp_timeout", "ringing_timeout",
             "stop_switch_after_invite_timeout", "stop_switch_after_sdp",
             "stop_switch_after_busy", "switch_after_ringing", "stop_switch_codes")


ON_OFF = st.sampled_from(["On", "Off"])
SECONDS = st.sampled_from([1, 2, 5, 10, 30])
OVERRIDE = st.sampled_from([0, 0, 1, 3])  # 0: the system value


@st.composite
def gateways(draw: st.DrawFn, gw_id: int) -> RoutingGateway:
    return vendor(
        gw_id, "44", priority=draw(st.integers(0, 2)),
        capacity=draw(st.sampled_from([None, None, 1, 2])),
        invite_timeout=draw(OVERRIDE), trying_timeout=draw(OVERRIDE),
        session_progress_timeout=draw(OVERRIDE), session_progress_sdp_timeout=draw(OVERRIDE),
        ringing_timeout=draw(OVERRIDE),
        stop_switch_after_invite_timeout=draw(st.sampled_from([None, True, False])),
        stop_switch_after_sdp=draw(st.sampled_from([None, True, False])),
        stop_switch_after_busy=draw(st.sampled_from([None, True, False])),
        switch_after_ringing=draw(st.booleans()),
        stop_switch_codes=draw(st.sampled_from([(), (), (480,), (404, 503)])),
        media_check=draw(st.sampled_from(["none", "both"])),
    )


@st.composite
def setups(draw: st.DrawFn) -> Setup:
    count = draw(st.integers(2, 3))
    gws = tuple(draw(gateways(i)) for i in range(1, count + 1))
    plans = tuple(draw(st.sampled_from(["ip", "ip", "ip", "two", "cold", "none"]))
                  for _ in gws)
    params = (
        ("SS_GATEWAY_SWITCH_LIMIT", draw(st.sampled_from([None, None, 1, 2]))),
        ("SS_SIP_TIMEOUT_INVITE", draw(SECONDS)),
        ("SS_SIP_TIMEOUT_TRYING", draw(SECONDS)),
        ("SS_SIP_TIMEOUT_SESSION_PROGRESS", draw(SECONDS)),
        ("SS_SIP_TIMEOUT_SESSION_PROGRESS_SDP", draw(SECONDS)),
        ("SS_SIP_TIMEOUT_RINGING", draw(SECONDS)),
        ("SS_SIP_STOP_SWITCH_AFTER_SDP", draw(ON_OFF)),
        ("SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT", draw(ON_OFF)),
        ("SS_GATEWAY_SWITCH_STOP_AFTER_RTP_START", draw(ON_OFF)),
        ("SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY", draw(ON_OFF)),
        ("SS_GATEWAY_SWITCH_UNTIL_CONNECT", draw(ON_OFF)),
        ("SS_SIP_SESSION_TTL", 90),
        ("SS_SIP_NO_TIMER_REINVITE_INTERVAL", draw(st.sampled_from([60, 7200]))),
    )
    return Setup(gws, plans, params, offer=draw(st.booleans()),
                 session_timer=draw(st.booleans()),
                 teardown_final=draw(st.sampled_from([487, 200, 503])),
                 relay=draw(st.booleans()))


def targets(gw: RoutingGateway, count: int) -> tuple[Target, ...]:
    return tuple(Target(f"v{gw.id}.test", f"203.0.{113 + n}.{gw.id}", 5060)
                 for n in range(count))


def plan_of(gw: RoutingGateway, kind: str) -> Plan | None:
    if kind == "two":
        return Plan(targets=targets(gw, 2))
    if kind == "cold":
        return Plan(missing=((f"v{gw.id}.test", "A"),))
    if kind == "none":
        return Plan(failure=f"no address for v{gw.id}.test (no such name)")
    return None  # its IP address


def build(setup: Setup) -> MachineHarness:
    params = Params()
    for name, value in setup.params:
        params.values[name] = value
    plans = {gw.id: plan for gw, kind in zip(setup.gateways, setup.plans, strict=True)
             if (plan := plan_of(gw, kind)) is not None}
    if setup.relay:
        params.values["SS_MEDIAPROXYMODE"] = "On"
    ctx = Context(gateways=list(setup.gateways), params=params, plans=plans,
                  relay=setup.relay)
    extra = "Session-Expires: 90\r\n" if setup.session_timer else ""
    invite = invite_request(body=OFFER if setup.offer else b"", extra=extra)
    return MachineHarness(ctx, invite)


def ack_call_id(data: bytes) -> str:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message.call_id


# -- what may happen after the end -----------------------------------------------------------


def allowed_after_end(action: CallAction, server: ServerTransaction) -> bool:
    """Answers to in-dialog requests, ACK (Send) and BYE of a late 2xx, the CANCEL of an
    INVITE given up before its first provisional, Release, ForgetLeg, and closing relay
    ports bound too late."""
    if isinstance(action, Respond | Confirm):
        return action.server is not server
    if isinstance(action, Transact):
        return action.token == 0 and action.request.method == "BYE"
    return isinstance(action, Send | Release | ForgetLeg | CancelInvite | StopMedia)


ORDER = list(CallState)
WITH_VIDEO = OFFER + b"m=video 4002 RTP/AVP 96\r\n"
OPEN_STATES = {AttemptState.CALLING, AttemptState.PROCEEDING, AttemptState.CANCEL_WAIT,
               AttemptState.CANCELLING, AttemptState.ANSWERED}
PRELUDES = ["none", "none", "none", "busy", "ringing", "early media", "answered", "confirmed",
            "confirmed"]
STATUSES = st.sampled_from([100, 180, 180, 183, 183, 200, 200, 486, 503, 404, 487, 480])
PICK = st.integers(0, 15)


class CallCoreMachine(RuleBasedStateMachine):
    """One call, random events."""

    h: MachineHarness
    setup: Setup

    def __init__(self) -> None:
        super().__init__()
        self.cseq = {Side.CALLER: 1, Side.CALLEE: 1}  # the last each side's peer sent
        self.states_seen = 0
        self.resolved: dict[int, int] = {}  # VendorResolved fed, by gateway id
        self.others: dict[int, int] = {}  # places on each gateway taken by other calls
        self.rules_run = 0
        self.media_started = 0  # MediaStarted fed
        self.grown: set[int] = set()  # GrowMedia tokens answered
        self.trail_seen = 0

    # -- feeding -----------------------------------------------------------------------------

    @initialize(setup=setups(), prelude=st.sampled_from(PRELUDES))
    def start(self, setup: Setup, prelude: str) -> None:
        """The call, and perhaps a quick way into a state worth shaking: the next gateway
        after a busy one, ringing, early media, answered (the caller's ACK not in yet),
        confirmed."""
        self.setup = setup
        self.h = build(setup)
        if prelude == "none":
            return
        if self.media_waits():
            self.media_started += 1
            self.feed(MediaStarted())
        for gw in self.setup.gateways:
            if self.resolves().get(gw.id):
                self.resolved[gw.id] = 1
                self.feed(VendorResolved(gw, Plan(targets=targets(gw, 1))))
        attempt = self.call.attempt
        if attempt is None or not attempt.token or not attempt.pending:
            return
        steps = {"busy": [(100, False), (486, False)],
                 "ringing": [(180, False)], "early media": [(183, True)],
                 "answered": [(180, False), (200, True)],
                 "confirmed": [(183, True), (200, True)]}[prelude]
        for status, sdp in steps:
            self.answer(attempt.seq, status, sdp, False)
        if prelude == "confirmed":
            self.h.ack_from_caller(b"" if self.setup.offer else OFFER)

    def feed(self, happening: CallEvent) -> list[CallAction]:
        return self.h.feed(happening)

    @property
    def call(self) -> Call:
        return self.h.call

    @property
    def caller_id(self) -> str:
        return self.h.invite.call_id

    def answerable(self) -> list[int]:
        """The attempts whose INVITE went out (a DNS failure sends none)."""
        return [a.seq for a in self.call.attempts if a.token]

    def request(self, side: Side, method: str, body: bytes = b"", out_of_order: bool = False
                ) -> Request:
        """A request from ``side``'s peer in its dialog (the current attempt's, callee),
        with the CSeq after the last one (or, out of order, one below it)."""
        if method != "ACK" and not (out_of_order and self.cseq[side] > 1):
            self.cseq[side] += 1
            out_of_order = False
        seq = self.cseq[side] - 1 if out_of_order else self.cseq[side]
        dialog = self.call.inbound if side is Side.CALLER else self.call.outbound
        call_id, ours, theirs = (dialog.call_id, dialog.local_tag, dialog.remote_tag) \
            if dialog is not None else ("?", "?", "?")
        headers = [("Via", f"SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bK{method}"
                           f"{self.cseq[side]}{side.value}"),
                   ("From", f"<sip:peer@192.0.2.99>;tag={theirs}"),
                   ("To", f"<sip:us@198.51.100.1>;tag={ours}"),
                   ("Call-ID", call_id),
                   ("CSeq", f"{seq} {method}")]
        if body:
            headers.append(("Content-Type", "application/sdp"))
        return Request(method, "sip:us@198.51.100.1", headers, body)

    def in_dialog(self, side: Side, method: str) -> None:
        request = self.request(side, method)
        self.feed(InDialogRequest(side, request, server_for(request)))

    def old_legs(self) -> list[Attempt]:
        """Attempts other than the current one whose leg the switchboard still routes to
        the call (WatchLeg without ForgetLeg) and whose peer has a dialog with us."""
        return [a for a in self.call.attempts if a is not self.call.attempt
                and a.dialog is not None and a.dialog.remote_tag is not None
                and a.dialog.call_id in self.h.ledger.watched]

    # -- the destinations --------------------------------------------------------------------

    def answer(self, seq: int, status: int, sdp: bool, retry_after: bool) -> None:
        headers = (("Retry-After", "30"),) if status == 503 and retry_after else ()
        body = ANSWER if sdp and status != 100 else b""
        self.h.answer(seq, status, body=body, headers=headers)

    @precondition(lambda self: self.call.attempt is not None and self.call.attempt.token)
    @rule(status=STATUSES, sdp=st.booleans(), retry_after=st.booleans())
    def current_attempt_answers(self, status: int, sdp: bool, retry_after: bool) -> None:
        """The attempt the call waits on answers (again, perhaps)."""
        assert self.call.attempt is not None
        self.answer(self.call.attempt.seq, status, sdp, retry_after)

    @precondition(lambda self: self.call.attempt is not None and self.call.attempt.token)
    @rule(status=st.sampled_from([180, 183, 200]), sdp=st.booleans())
    def current_attempt_progresses(self, status: int, sdp: bool) -> None:
        """The attempt the call waits on rings or answers (again, perhaps)."""
        assert self.call.attempt is not None
        self.answer(self.call.attempt.seq, status, sdp, False)

    @precondition(lambda self: bool(self.answerable()))
    @rule(pick=PICK, status=STATUSES, sdp=st.booleans(), retry_after=st.booleans())
    def any_attempt_answers(self, pick: int, status: int, sdp: bool, retry_after: bool
                            ) -> None:
        """Any attempt, current or long finished, answers anything."""
        seqs = self.answerable()
        self.answer(seqs[pick % len(seqs)], status, sdp, retry_after)

    @precondition(lambda self: any(self.resolves()))
    @rule(pick=PICK, outcome=st.sampled_from(["one", "two", "none"]))
    def dns_answers(self, pick: int, outcome: str) -> None:
        """The DNS answers a cold cache's Resolve (once per Resolve)."""
        pending = self.resolves()
        waiting = [gw for gw in self.setup.gateways for _ in range(pending.get(gw.id, 0))]
        gw = waiting[pick % len(waiting)]
        self.resolved[gw.id] = self.resolved.get(gw.id, 0) + 1
        if outcome == "none":
            plan = Plan(failure=f"no address for v{gw.id}.test (no such name)")
        else:
            plan = Plan(targets=targets(gw, 1 if outcome == "one" else 2))
        self.feed(VendorResolved(gw, plan))

    def resolves(self) -> dict[int, int]:
        """Resolve actions not answered yet, by gateway id."""
        asked = {gw.id: self.h.ledger.media.count(f"resolve {gw.id}")
                 for gw in self.setup.gateways}
        return {i: n - self.resolved.get(i, 0) for i, n in asked.items()
                if n > self.resolved.get(i, 0)}

    # -- the media relay ---------------------------------------------------------------------

    def media_waits(self) -> int:
        """StartMedia actions not answered by MediaStarted yet (at most one)."""
        asked = sum(isinstance(a, StartMedia) for a in self.h.ledger.actions)
        return asked - self.media_started

    @precondition(lambda self: self.media_waits() > 0)
    @rule(failed=st.booleans())
    def relay_ports_bound(self, failed: bool) -> None:
        """The relay's ports for the call are bound, or none is free."""
        self.media_started += 1
        if failed:
            self.feed(MediaStarted("no free port pair"))
        else:
            self.h.media_started()

    def growing(self) -> list[int]:
        """GrowMedia tokens not answered yet."""
        asked = [a.token for a in self.h.ledger.actions if isinstance(a, GrowMedia)]
        return [t for t in asked if t not in self.grown]

    @precondition(lambda self: bool(self.growing()))
    @rule(pick=PICK, failed=st.booleans())
    def relay_grows(self, pick: int, failed: bool) -> None:
        """More streams bound for an offer with more m= lines (or none free)."""
        tokens = self.growing()
        token = tokens[pick % len(tokens)]
        self.grown.add(token)
        grow = next(a for a in self.h.ledger.actions
                    if isinstance(a, GrowMedia) and a.token == token)
        if failed:
            self.feed(MediaGrown(token, "no free port pair"))
        else:
            self.feed(MediaGrown(token, ports=[(41000 + 4 * i, 41002 + 4 * i)
                                               for i in range(grow.count)]))

    @precondition(lambda self: self.h.ctx.relay)
    @rule(silent=st.booleans())
    def rtp_flow(self, silent: bool) -> None:
        """RTP stops (the relay reports both legs quiet for ever) or flows again."""
        self.h.idle = {"a": 1e6, "b": 1e6} if silent else {"a": 0.0, "b": 0.0}

    # -- the clock ---------------------------------------------------------------------------

    @rule(seconds=st.sampled_from([0.1, 0.1, 0.5, 0.5, 1.0, 1.0, 2.0, 5.0, 33.0, 61.0]))
    def time_passes(self, seconds: float) -> None:
        self.h.advance(seconds)

    @precondition(lambda self: bool(self.h.ledger.timers))
    @rule(pick=PICK, early=st.booleans())
    def until_a_timer(self, pick: int, early: bool) -> None:
        """The clock to (or just short of) one timer's due time."""
        due = sorted(self.h.ledger.timers.values())
        at = due[pick % len(due)]
        self.h.advance(max(0.0, at - self.h.now - (0.001 if early else 0.0)))

    @rule(pick=PICK, kind=st.sampled_from(["fill", "hold", "free"]))
    def elsewhere(self, pick: int, kind: str) -> None:
        """The rest of the switch: another call takes (or frees) a place on a gateway, or
        a 503 with Retry-After from another call takes it out of routing."""
        gw = self.setup.gateways[pick % len(self.setup.gateways)]
        ctx = self.h.ctx
        if kind == "fill":
            self.others[gw.id] = self.others.get(gw.id, 0) + 1
            ctx.occupied[gw.id] = ctx.occupied.get(gw.id, 0) + 1
        elif kind == "free" and self.others.get(gw.id):
            self.others[gw.id] -= 1
            ctx.occupied[gw.id] -= 1
        elif kind == "hold":
            ctx.held_until[gw.id] = self.h.now + 30

    # -- the caller, the operator --------------------------------------------------------------

    @rule(sdp=st.booleans())
    def caller_acks(self, sdp: bool) -> None:
        self.h.ack_from_caller(OFFER if sdp else b"")

    @rule(kind=st.sampled_from(["cancel", "hang up", "no ack", "caller bye", "callee bye"]))
    def an_end(self, kind: str) -> None:
        """What ends a call (or, too late, does not): the caller's CANCEL, an operator's
        hang-up, Timer L of the caller's 200, a BYE from either side."""
        if kind == "cancel":
            self.feed(CallerCancel())
        elif kind == "hang up":
            self.feed(HangUp("operator"))
        elif kind == "no ack":
            self.feed(NoAck())
        else:
            self.in_dialog(Side.CALLER if kind == "caller bye" else Side.CALLEE, "BYE")

    # -- the rarer, the late, the odd ----------------------------------------------------------

    def quiet_invites(self) -> list[int]:
        """Attempts whose INVITE had no response at all (Timer B may fire), or whose
        transaction is over (a late, duplicate report)."""
        return [a.seq for a in self.call.attempts if a.token and (
            a.state in (AttemptState.CALLING, AttemptState.CANCEL_WAIT) or not a.pending)]

    @precondition(lambda self: bool(self.quiet_invites()))
    @rule(pick=PICK)
    def timer_b(self, pick: int) -> None:
        """No response at all to an INVITE within its timeout."""
        quiet = self.quiet_invites()
        self.h.silence(quiet[pick % len(quiet)])

    @rule(kind=st.sampled_from(["stray 200", "stray 486", "rtp", "stale timer",
                                "caller ack of re-INVITE", "callee ack of re-INVITE"]),
          pick=PICK, sdp=st.booleans())
    def oddity(self, kind: str, pick: int, sdp: bool) -> None:
        """A response retransmitted after its transaction ended; RTP from the
        destination side; a timer cancelled after it was due firing anyway; the ACK of
        a relayed re-INVITE's 2xx."""
        seqs = self.answerable()
        if kind.startswith("stray") and seqs:
            attempt = self.call.attempts[seqs[pick % len(seqs)] - 1]
            assert attempt.dialog is not None
            response = make_response(self.h.invite_of(attempt.seq), int(kind[-3:]),
                                     to_tag="callee-tag")
            self.feed(StrayResponse(attempt.dialog.call_id, response))
        elif kind == "rtp":
            self.feed(RtpStarted())
        elif kind == "stale timer":
            names = sorted({a.name for a in self.h.ledger.actions
                            if isinstance(a, SetTimer)} - self.call.timers)
            if names:
                self.feed(TimerFired(names[pick % len(names)]))
        elif kind.endswith("ack of re-INVITE"):
            side = Side.CALLER if kind.startswith("caller") else Side.CALLEE
            self.feed(AckReceived(side, self.request(side, "ACK", OFFER if sdp else b"")))

    # -- in-dialog requests --------------------------------------------------------------------

    @rule(side=st.sampled_from(Side), method=st.sampled_from(["INVITE", "INFO", "REFER",
                                                               "UPDATE"]),
          sdp=st.sampled_from(["none", "audio", "audio and video"]),
          out_of_order=st.booleans())
    def request_from(self, side: Side, method: str, sdp: str, out_of_order: bool) -> None:
        """A request in either leg's dialog; out of order, with a CSeq below the last
        one of its side (a late copy): then it changes nothing."""
        body = {"none": b"", "audio": OFFER if side is Side.CALLER else ANSWER,
                "audio and video": WITH_VIDEO}[sdp]
        state = self.call.state
        dialog = self.call.inbound if side is Side.CALLER else self.call.outbound
        last = dialog.remote_seq if dialog is not None else None
        request = self.request(side, method, body, out_of_order)
        actions = self.feed(InDialogRequest(side, request, server_for(request)))
        if last is not None and request.cseq.number < last:
            assert self.call.state is state
            assert [a.response.status for a in actions if isinstance(a, Respond)] == [500]
            assert len(actions) == 1, actions

    @precondition(lambda self: bool(self.old_legs()))
    @rule(pick=PICK, method=st.sampled_from(["BYE", "INFO", "UPDATE", "INVITE"]))
    def request_on_an_old_leg(self, pick: int, method: str) -> None:
        """A destination the call left (given up, or hung up after a late 2xx) sends a
        request in its own dialog, e.g. its BYE crossing ours. The switchboard hands it
        to the call as the callee side's: it is no business of the leg the call is on."""
        legs = self.old_legs()
        dialog = legs[pick % len(legs)].dialog
        assert dialog is not None
        self.cseq[Side.CALLEE] += 1
        request = Request(method, "sip:us@198.51.100.1", [
            ("Via", f"SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bKold{self.cseq[Side.CALLEE]}"),
            ("From", f"<sip:4420@203.0.113.9>;tag={dialog.remote_tag}"),
            ("To", f"<sip:1001@198.51.100.1>;tag={dialog.local_tag}"),
            ("Call-ID", dialog.call_id), ("CSeq", f"{self.cseq[Side.CALLEE]} {method}")])
        state = self.call.state
        actions = self.feed(InDialogRequest(Side.CALLEE, request, server_for(request)))
        assert self.call.state is state, f"{method} on an old leg moved the call to " \
            f"{self.call.state.value}"
        assert not [a for a in actions if isinstance(a, Respond) and a.server is self.h.server]
        relayed = [a.request.method for a in actions if isinstance(a, Transact)]
        assert not relayed, f"{method} on an old leg relayed to the caller as {relayed}"

    def relayed_tokens(self) -> list[int]:
        """The requests the call sent besides its INVITEs (relayed, refreshes)."""
        invites = {a.token for a in self.call.attempts}
        return [t for t in self.h.ledger.requests if t not in invites]

    @precondition(lambda self: bool(self.relayed_tokens()))
    @rule(pick=PICK, status=st.sampled_from([100, 180, 200, 200, 408, 481, 486, 491, 500]),
          sdp=st.booleans())
    def relayed_request_answered(self, pick: int, status: int, sdp: bool) -> None:
        """A relayed request or a refresh answered (again, perhaps)."""
        tokens = self.relayed_tokens()
        self.h.reply_to(tokens[pick % len(tokens)], status, ANSWER if sdp else b"")

    @precondition(lambda self: bool(self.relayed_tokens()))
    @rule(pick=PICK)
    def relayed_request_unanswered(self, pick: int) -> None:
        tokens = self.relayed_tokens()
        self.feed(NoReply(tokens[pick % len(tokens)]))

    # -- invariants ----------------------------------------------------------------------------

    CHECKS = ("one_cdr_one_end", "capacity", "attempt_bookkeeping", "timers",
              "caller_invite", "nothing_but_cleanup_after_the_end", "cdr_says_what_happened",
              "state_moves", "one_cancel_per_invite", "one_final_per_request",
              "one_invite_at_a_time", "acks_match_invites",
              "no_bye_to_the_caller_before_its_ack", "every_2xx_acked_before_bye")

    @invariant()
    def invariants_hold(self) -> None:
        self.rules_run += 1
        for name in self.CHECKS:
            getattr(self, name)()

    def one_cdr_one_end(self) -> None:
        ledger = self.h.ledger
        assert len(ledger.cdrs) <= 1, ledger.cdrs
        assert ledger.ended in (0, 1)
        assert (ledger.ended == 1) == (self.call.state is CallState.ENDED)
        assert len(ledger.cdrs) == ledger.ended

    def capacity(self) -> None:
        ledger = self.h.ledger
        assert self.h.in_use() >= 0
        assert all(n >= 0 for n in ledger.occupied.values()), ledger.occupied
        occupied: dict[int, int] = {}
        released: dict[int, int] = {}
        for action in ledger.actions:
            if isinstance(action, Occupy):
                occupied[id(action.destination)] = occupied.get(id(action.destination), 0) + 1
            elif isinstance(action, Release):
                released[id(action.destination)] = released.get(id(action.destination), 0) + 1
        for key, n in released.items():
            assert n <= occupied.get(key, 0), "a Release without its Occupy, or two"
        if self.call.ended and not any(a.pending for a in self.call.attempts):
            assert self.h.in_use() == 0, ledger.occupied

    def attempt_bookkeeping(self) -> None:
        """Capacity is what the open attempts hold; an attempt given up holds it only
        until its release timer; a switching timer runs only for the attempt the call
        waits on."""
        call = self.call
        assert self.h.in_use() == sum(a.open for a in call.attempts), self.h.ledger.occupied
        for a in call.attempts:
            if a.open:
                assert not call.ended
                assert a.state in OPEN_STATES, a.state
                assert not a.abandoned or a.release_name in call.timers, a.seq
                assert a.state is not AttemptState.ANSWERED or (
                    a is call.attempt and call.state in (CallState.ANSWERED,
                                                         CallState.CONFIRMED))
            if a.release_name in call.timers:
                assert a.open and a.abandoned, (a.seq, a.state)
            if a.timer_name in call.timers:
                assert a is call.attempt and a.pending and not a.abandoned, (a.seq, a.state)

    def timers(self) -> None:
        assert set(self.h.ledger.timers) == self.call.timers
        if self.call.ended:
            assert self.h.ledger.timers == {}
            assert self.call.timers == set()

    def caller_invite(self) -> None:
        statuses = self.h.caller_statuses
        finals = [i for i, s in enumerate(statuses) if s >= 200]
        assert len(finals) <= 1, statuses
        assert statuses.count(200) <= 1, statuses
        if finals:
            assert finals[0] == len(statuses) - 1, f"sent after the final: {statuses}"
        if self.call.ended:
            assert len(finals) == 1, statuses

    def nothing_but_cleanup_after_the_end(self) -> None:
        actions = self.h.ledger.actions
        ends = [i for i, a in enumerate(actions) if isinstance(a, WriteCdr)]
        if not ends:
            assert not any(isinstance(a, CallEnded) for a in actions)
            return
        assert isinstance(actions[ends[0] - 1], CallEnded)
        after = actions[ends[0] + 1:]
        bad = [a for a in after if not allowed_after_end(a, self.h.server)]
        assert not bad, bad

    def cdr_says_what_happened(self) -> None:
        ledger = self.h.ledger
        notes = ledger.notes
        assert notes[:1] == ["started"] and notes.count("answered") <= 1, notes
        assert ("answered" in notes) == (200 in self.h.caller_statuses), notes
        if not ledger.cdrs:
            return
        record, attempts = ledger.cdrs[0]
        finals = [s for s in self.h.caller_statuses if s >= 200]
        assert record.final_code == finals[0], (record.final_code, finals)
        assert (record.answer_at is not None) == (finals[0] == 200)
        assert record.end_at is not None and record.end_at >= record.start_at
        assert record.duration >= 0
        assert record.hangup_by in ("caller", "callee", "system"), record.hangup_by
        assert [a["seq"] for a in attempts] == list(range(1, len(attempts) + 1))
        assert all(a["outcome"] != "pending" for a in attempts), attempts

    def no_bye_to_the_caller_before_its_ack(self) -> None:
        """RFC 3261 15: no BYE on the caller's dialog while our 200 waits for its ACK,
        unless that wait is over (Timer L)."""
        for before, happening, actions in self.h.trail[self.trail_seen:]:
            if before is not CallState.ANSWERED or isinstance(happening, NoAck) or (
                    isinstance(happening, AckReceived) and happening.side is Side.CALLER):
                continue
            byes = [a for a in actions if isinstance(a, Transact)
                    and a.request.method == "BYE" and a.request.call_id == self.caller_id]
            assert not byes, f"BYE to the caller before its ACK, on {happening}"
        self.trail_seen = len(self.h.trail)

    def every_2xx_acked_before_bye(self) -> None:
        """RFC 3261 13.2.2.4: the UAC core MUST ACK each 2xx; a leg we hang up after a
        2xx is ACKed first."""
        acked: set[str] = set()
        for action in self.h.ledger.actions:
            if isinstance(action, Send) and action.data.startswith(b"ACK "):
                acked.add(ack_call_id(action.data))
            elif isinstance(action, Transact) and action.request.method == "BYE" \
                    and action.request.call_id != self.caller_id:
                assert action.request.call_id in acked, \
                    f"BYE without the ACK of its 2xx on {action.request.call_id}"

    def one_final_per_request(self) -> None:
        """Every in-dialog request the call took gets at most one final response."""
        finals: dict[int, int] = {}
        for server, response in self.h.ledger.responses:
            if server is not self.h.server and response.status >= 200:
                finals[id(server)] = finals.get(id(server), 0) + 1
        assert all(n == 1 for n in finals.values()), finals

    def one_invite_at_a_time(self) -> None:
        """RFC 3261 14.1: no INVITE sent in a dialog while another INVITE transaction is
        in progress in it, either way: an attempt's own INVITE until its final response,
        the caller's until we answered it, a relayed re-INVITE, a refresh."""
        in_progress: dict[int, str] = {}  # our INVITEs waiting for a final, by token
        caller_waits = True  # the caller's INVITE has no final response yet
        steps: list[tuple[CallEvent | None, list[CallAction]]] = [(None, self.h.begun)]
        steps += [(happening, actions) for _, happening, actions in self.h.trail]
        for happening, actions in steps:
            if (isinstance(happening, Reply) and happening.response.status >= 200) or \
                    isinstance(happening, NoReply):
                in_progress.pop(happening.token, None)
            for action in actions:
                if isinstance(action, Respond) and action.server is self.h.server and \
                        action.response.status >= 200:
                    caller_waits = False
                if not (isinstance(action, Transact) and action.request.method == "INVITE"):
                    continue
                call_id = action.request.call_id
                assert call_id not in in_progress.values(), \
                    f"an INVITE in {call_id} while one of ours is in progress there"
                assert call_id != self.caller_id or not caller_waits, \
                    "an INVITE to the caller before its own INVITE had our final response"
                if action.token:
                    in_progress[action.token] = call_id

    def acks_match_invites(self) -> None:
        """An ACK we send acknowledges an INVITE we sent in that dialog: same Call-ID
        and CSeq number (RFC 3261 13.2.2.4, 17.1.1.3)."""
        invites = {(a.request.call_id, a.request.cseq.number) for a in self.h.ledger.actions
                   if isinstance(a, Transact) and a.request.method == "INVITE"}
        for action in self.h.ledger.actions:
            if isinstance(action, Send) and action.data.startswith(b"ACK "):
                ack = parse_message(action.data)
                assert isinstance(ack, Request)
                assert (ack.call_id, ack.cseq.number) in invites, \
                    f"ACK {ack.cseq.number} in {ack.call_id} acknowledges no INVITE of ours"

    def state_moves(self) -> None:
        """The call's state moves only along ``call_state.TRANSITIONS``, and only when
        an event is handled."""
        states = self.h.states
        for before, after in zip(states[self.states_seen:], states[self.states_seen + 1:],
                                 strict=False):
            assert after in REACHABLE[before], f"{before.value} -> {after.value}"
        assert states[-1] is self.call.state, (states[-1], self.call.state)
        self.states_seen = len(states) - 1

    def one_cancel_per_invite(self) -> None:
        tokens = [a.token for a in self.h.ledger.actions if isinstance(a, CancelInvite)]
        assert len(tokens) == len(set(tokens)), tokens
        invites = {a.token: a for a in self.call.attempts if a.token}
        assert all(t in invites for t in tokens), tokens

    def teardown(self) -> None:
        """Force the end, let everything outstanding finish, check it all once more."""
        if not hasattr(self, "h"):
            return
        h = self.h
        reached = set(h.states) - {CallState.ENDED}
        event(f"furthest state: {max(reached, key=ORDER.index, default=CallState.ROUTING).value}")
        event(f"ended before teardown: {self.call.ended}")
        event(f"attempts: {len(self.call.attempts)}")
        event(f"steps: {self.rules_run}")
        self.feed(HangUp("operator"))
        if self.call.state is CallState.ANSWERED:
            # The caller's BYE waits for its ACK (RFC 3261 15): Timer L, 32 s on.
            self.feed(NoAck())
        h.advance(100.0)
        for attempt in list(self.call.attempts):
            if attempt.token and attempt.pending:
                status = self.setup.teardown_final
                h.answer(attempt.seq, status, body=ANSWER if status == 200 else b"")
        # Every other request of ours times out (Timer F/B), every GrowMedia ends, and then
        # every in-dialog request the call took has had its final response.
        for token in self.relayed_tokens():
            self.feed(NoReply(token))
        for token in self.growing():
            self.grown.add(token)
            self.feed(MediaGrown(token, "too late"))
        assert self.call.ended
        finished = {id(server) for server, response in h.ledger.responses
                    if response.status >= 200}
        for _, happening, _ in h.trail:
            if isinstance(happening, InDialogRequest):
                assert id(happening.server) in finished, \
                    f"{happening.request.method} from the {happening.side.value} unanswered"
        for name in self.CHECKS:
            getattr(self, name)()
        assert h.in_use() == 0, h.ledger.occupied
        assert len(h.ledger.cdrs) == 1
        assert not any(a.pending for a in self.call.attempts)
        acked = {ack_call_id(a.data) for a in h.ledger.actions
                 if isinstance(a, Send) and a.data.startswith(b"ACK ")}
        for seq in h.answered:
            dialog = self.call.attempts[seq - 1].dialog
            assert dialog is not None and dialog.call_id in acked, f"2xx of {seq} never ACKed"
        # Every Occupy released, exactly once.
        keys = [destination_key(a.destination) for a in h.ledger.actions
                if isinstance(a, Occupy)]
        assert all(h.ledger.occupied.get(k, 0) == 0 for k in keys)


CallCoreMachine.TestCase.settings = settings(
    max_examples=1000, stateful_step_count=50, deadline=None,
    # One failure, shrunk, is enough to act on (and keeps a failing run short).
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCallCore = CallCoreMachine.TestCase
