"""The call core (b2bua/calls/call.py) under random event orders, legal and illegal.

A hypothesis state machine starts one call on two or three vendors of one prefix, with
random switching rules (docs/failover.md), DNS plans and liveness settings, then feeds
it whatever a network, a transaction layer, an operator and a clock could: any attempt
(old ones too) answering any status, Timer B, timers firing, the caller's CANCEL and
ACK, BYE, re-INVITE, INFO and REFER from either side, answers to the requests the call
relayed, late and duplicate answers, stray 2xx retransmissions, RTP start, the Timer L
of the caller's 200, an operator's hang-up, the DNS answering a cold cache.

Only what our own stack never produces is left out: a ``NoReply`` for an INVITE that
already had a response (Timer B stops at the first response, RFC 3261 17.1.1.2), a
``TimerFired`` before its time, and a second ``VendorResolved`` for one ``Resolve``.

Invariants (after every step, and at teardown after an operator's hang-up, the
caller's Timer L if it had not ACKed our 200 yet, 100 s of clock and a final response
to every INVITE still open):

* at most one CDR; exactly one once the call ended; ``CallEnded`` at most once, exactly
  when the state is ENDED;
* capacity never negative, every Occupy released at most once, nothing left occupied
  once the call ended and every attempt had its final response;
* the core's timers are the ledger's; none left after the end;
* the caller's INVITE gets exactly one final response (200 at most once) and nothing
  after it; after the end nothing more on the caller's INVITE and no new attempt: only
  answers to in-dialog requests, ACK and BYE of a late 2xx, CANCEL of an INVITE given
  up before it had a provisional, and Release;
* the call's state moves only along ``call_state.TRANSITIONS``;
* an attempt's INVITE is CANCELled at most once, and never after its final response.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from callharness import (
    ANSWER,
    CALLER,
    OFFER,
    ORIGIN,
    START,
    CallHarness,
    Context,
    Ledger,
    destination_key,
    invite_request,
    server_for,
    vendor,
)
from hypothesis import HealthCheck, event, settings
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
    Occupy,
    Release,
    Respond,
    Send,
    SetTimer,
    Transact,
    WriteCdr,
)
from b2bua.calls.attempt_state import AttemptState
from b2bua.calls.call import Call
from b2bua.calls.call_state import TRANSITIONS, CallState, CallStep
from b2bua.calls.events import (
    AckReceived,
    CallerCancel,
    CallEvent,
    HangUp,
    InDialogRequest,
    NoAck,
    NoReply,
    Side,
    StrayResponse,
    TimerFired,
    VendorResolved,
)
from b2bua.config.live import Params
from b2bua.routing.dns import Plan, Target
from b2bua.routing.gateways import RoutingGateway
from b2bua.sip.message import Request, make_response
from b2bua.sip.transaction import ServerTransaction

# -- the call's world ------------------------------------------------------------------------


class RecordingCall(Call):
    """The core, with every state step it takes recorded (the core itself unchanged)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.steps: list[tuple[CallState, CallStep, CallState]] = []
        super().__init__(*args, **kwargs)

    def _step(self, step: CallStep) -> None:
        before = self.state
        super()._step(step)
        self.steps.append((before, step, self.state))


class MachineHarness(CallHarness):
    """``CallHarness`` with a recording core."""

    def __init__(self, ctx: Context, invite: Request) -> None:
        self.ctx = ctx
        self.now = START
        self.ledger = Ledger()
        self.invite = invite
        self.server = server_for(invite)
        self.call: RecordingCall = RecordingCall(ctx, 1, invite, CALLER, self.server, ORIGIN,
                                                 self.now)
        self.carry_out(self.call.begin(self.now))


@dataclass(frozen=True)
class Setup:
    gateways: tuple[RoutingGateway, ...]
    plans: tuple[str, ...]  # per gateway: ip | two | cold | none
    params: tuple[tuple[str, Any], ...]
    offer: bool  # the caller's INVITE carries SDP (else: late offer)
    session_timer: bool  # the caller's INVITE asks for a session timer
    teardown_final: int  # the final response every open INVITE gets at teardown

    def __repr__(self) -> str:
        gws = []
        for gw in self.gateways:
            own = {k: getattr(gw, k) for k in OVERRIDES
                   if getattr(gw, k) not in (0, None, (), True)}
            gws.append(f"v{gw.id}(priority={gw.priority}, {own})")
        params = {k[3:]: v for k, v in self.params}
        return (f"Setup({', '.join(gws)}, plans={self.plans}, {params}, offer={self.offer}, "
                f"session_timer={self.session_timer}, teardown_final={self.teardown_final})")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


OVERRIDES = ("capacity", "invite_timeout", "trying_timeout", "session_progress_timeout",
             "session_progress_sdp_timeout", "ringing_timeout",
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
                 teardown_final=draw(st.sampled_from([487, 200, 503])))


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
    ctx = Context(gateways=list(setup.gateways), params=params, plans=plans)
    extra = "Session-Expires: 90\r\n" if setup.session_timer else ""
    invite = invite_request(body=OFFER if setup.offer else b"", extra=extra)
    return MachineHarness(ctx, invite)


# -- what may happen after the end -----------------------------------------------------------


def allowed_after_end(action: CallAction, server: ServerTransaction) -> bool:
    """Answers to in-dialog requests, ACK (Send) and BYE of a late 2xx, the CANCEL of an
    INVITE given up before its first provisional, Release and ForgetLeg."""
    if isinstance(action, Respond | Confirm):
        return action.server is not server
    if isinstance(action, Transact):
        return action.token == 0 and action.request.method == "BYE"
    return isinstance(action, Send | Release | ForgetLeg | CancelInvite)


ORDER = list(CallState)
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
        self.cseq = {Side.CALLER: 1, Side.CALLEE: 0}
        self.state_seen = CallState.ROUTING
        self.steps_seen = 0
        self.resolved: dict[int, int] = {}  # VendorResolved fed, by gateway id
        self.others: dict[int, int] = {}  # places on each gateway taken by other calls
        self.rules_run = 0

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
    def call(self) -> RecordingCall:
        return self.h.call

    def answerable(self) -> list[int]:
        """The attempts whose INVITE went out (a DNS failure sends none)."""
        return [a.seq for a in self.call.attempts if a.token]

    def request(self, side: Side, method: str, body: bytes = b"") -> Request:
        """A request from ``side``'s peer in its dialog (the current attempt's, callee)."""
        if method != "ACK":
            self.cseq[side] += 1
        if side is Side.CALLER:
            call_id, tag = self.h.invite.call_id, self.call.inbound.local_tag
        else:
            outbound = self.call.outbound
            call_id, tag = (outbound.call_id, outbound.local_tag) if outbound else ("?", "?")
        headers = [("Via", f"SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bK{method}"
                           f"{self.cseq[side]}{side.value}"),
                   ("From", "<sip:peer@192.0.2.99>;tag=peer"),
                   ("To", f"<sip:us@198.51.100.1>;tag={tag}"),
                   ("Call-ID", call_id), ("CSeq", f"{self.cseq[side]} {method}")]
        if body:
            headers.append(("Content-Type", "application/sdp"))
        return Request(method, "sip:us@198.51.100.1", headers, body)

    def in_dialog(self, side: Side, method: str, body: bytes = b"") -> None:
        request = self.request(side, method, body)
        self.feed(InDialogRequest(side, request, server_for(request)))

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
            self.call.on_rtp_started()
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
          sdp=st.booleans())
    def request_from(self, side: Side, method: str, sdp: bool) -> None:
        body = (OFFER if side is Side.CALLER else ANSWER) if sdp else b""
        self.in_dialog(side, method, body)

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

    @invariant()
    def one_cdr_one_end(self) -> None:
        self.rules_run += 1
        ledger = self.h.ledger
        assert len(ledger.cdrs) <= 1, ledger.cdrs
        assert ledger.ended in (0, 1)
        assert (ledger.ended == 1) == (self.call.state is CallState.ENDED)
        assert len(ledger.cdrs) == ledger.ended

    @invariant()
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

    @invariant()
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

    @invariant()
    def timers(self) -> None:
        assert set(self.h.ledger.timers) == self.call.timers
        if self.call.ended:
            assert self.h.ledger.timers == {}
            assert self.call.timers == set()

    @invariant()
    def caller_invite(self) -> None:
        statuses = self.h.caller_statuses
        finals = [i for i, s in enumerate(statuses) if s >= 200]
        assert len(finals) <= 1, statuses
        assert statuses.count(200) <= 1, statuses
        if finals:
            assert finals[0] == len(statuses) - 1, f"sent after the final: {statuses}"
        if self.call.ended:
            assert len(finals) == 1, statuses

    @invariant()
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

    @invariant()
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

    @invariant()
    def state_moves(self) -> None:
        state = self.state_seen
        for before, step, after in self.call.steps[self.steps_seen:]:
            assert before is state
            assert TRANSITIONS.get((before, step)) is after, (before, step, after)
            state = after
        assert state is self.call.state, (state, self.call.state)
        self.state_seen, self.steps_seen = state, len(self.call.steps)

    @invariant()
    def one_cancel_per_invite(self) -> None:
        tokens = [a.token for a in self.h.ledger.actions if isinstance(a, CancelInvite)]
        assert len(tokens) == len(set(tokens)), tokens
        invites = {a.token: a for a in self.call.attempts if a.token}
        assert all(t in invites for t in tokens), tokens

    def teardown(self) -> None:
        if not hasattr(self, "h"):
            return
        h = self.h
        reached = {after for _, _, after in self.call.steps if after is not CallState.ENDED}
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
        assert self.call.ended
        for check in (self.one_cdr_one_end, self.capacity, self.attempt_bookkeeping,
                      self.timers, self.caller_invite,
                      self.cdr_says_what_happened,
                      self.nothing_but_cleanup_after_the_end, self.state_moves,
                      self.one_cancel_per_invite):
            check()
        assert h.in_use() == 0, h.ledger.occupied
        assert len(h.ledger.cdrs) == 1
        assert not any(a.pending for a in self.call.attempts)
        # Every Occupy released exactly once.
        keys = [destination_key(a.destination) for a in h.ledger.actions
                if isinstance(a, Occupy)]
        assert all(h.ledger.occupied.get(k, 0) == 0 for k in keys)


CallCoreMachine.TestCase.settings = settings(
    max_examples=1500, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCallCore = CallCoreMachine.TestCase
