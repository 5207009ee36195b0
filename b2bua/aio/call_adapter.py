"""The asyncio adapter of a call: it carries out the actions the call's core returns
(``call.py``) with the SIP stack, the event loop's timers, the media relay, the DNS
resolver and the CDR writer, and feeds the core what comes of them, each time with the
wall clock's ``now``. It decides nothing.

One adapter per call. The switchboard finds it by Call-ID (``Switchboard.legs``) and
hands it the messages of either leg; the stack's transactions, the timers and the
relay's tasks report to it. Nothing the core holds refers back to the adapter, and the
relay sessions' callback to it is cut when they close, so a finished call is freed by
reference counting once its timers and transactions let go.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from b2bua.aio.call_media import RelaySessions
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
from b2bua.calls.call import Call
from b2bua.calls.events import (
    CallEvent,
    MediaGrown,
    MediaReport,
    MediaStarted,
    NoAck,
    NoReply,
    Reply,
    Reserved,
    RtpStarted,
    Side,
    TimerFired,
    VendorResolved,
)
from b2bua.calls.records import ladder_leg
from b2bua.ladders import Ladder
from b2bua.media.plane import Counters
from b2bua.sip.message import Response
from b2bua.sip.transaction import TIMER_64T1, ClientTransaction, TimerHandle
from b2bua.storage.active_calls import note_answered, note_ended, note_started

if TYPE_CHECKING:
    from b2bua.calls.switchboard import Switchboard


def _ignore_response(_response: Response) -> None:
    return None


def _ignore() -> None:
    return None


class CallAdapter:
    """Runs one call's core."""

    __slots__ = ("_feeding", "_held", "_invites", "_queued", "_timers", "board", "call",
                 "ladder", "media")

    def __init__(self, call: Call, board: Switchboard) -> None:
        self.call = call
        self.board = board
        self._timers: dict[str, TimerHandle] = {}
        # INVITE transactions by token, kept until their final response for a CANCEL.
        self._invites: dict[int, ClientTransaction] = {}
        self.media: RelaySessions | None = None  # the call's relay sessions, if relayed
        # An event that comes while the actions of another are carried out (a report
        # an action asks for) waits for them: the core sees events one at a time and
        # its actions run in the order it returned them.
        self._feeding = False
        self._queued: list[CallEvent] = []
        # On a cluster node, the new call's actions after its note, held until the note
        # is in the database (Switchboard.when_noted); None when nothing is held.
        self._held: list[CallAction] | None = None
        # The call's SIP ladder while it is up (b2bua/ladders.py); None when not kept.
        self.ladder: Ladder | None = None

    def start(self) -> None:
        self._feeding = True
        actions = self.call.begin(self.board.clock.time())
        if self.board.node:
            # Behind the edge, a call the caller heard nothing about is the edge's to
            # retry on another node if this one dies; one it heard from (its 100) has a
            # note, which the node taking over turns into its CDR (docs/cluster.md).
            # Nothing is said or sent for the call, and the events that come meanwhile
            # wait, until the note is committed.
            noted = [a for a in actions if isinstance(a, NoteStarted)]
            self._held = [a for a in actions if not isinstance(a, NoteStarted)]
            for action in noted:
                self._note_started(action)
            self.board.when_noted(self._noted)
            return
        self._run(actions)

    def _noted(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._run(held)

    def _run(self, actions: list[CallAction]) -> None:
        self._feeding = True
        try:
            for action in actions:
                _DO[type(action)](self, action)
        finally:
            self._feeding = False
        if self._queued:
            self.feed(self._queued.pop(0))

    def feed(self, event: CallEvent) -> None:
        if self._feeding:
            self._queued.append(event)
            return
        self._feeding = True
        try:
            for action in self.call.handle(event, self.board.clock.time()):
                _DO[type(action)](self, action)
        finally:
            self._feeding = False
        if self._queued:
            self.feed(self._queued.pop(0))

    def snapshot(self) -> dict[str, object]:
        """The call as the API lists it, with its relay's counters now."""
        snapshot = self.call.snapshot()
        anchor = self.call.media
        if anchor is not None and self.media is not None:
            snapshot["media"] = anchor.stats(self.media.counters())
        return snapshot

    # -- what comes back -------------------------------------------------------------------

    def _reply(self, token: int, response: Response) -> None:
        if response.status >= 200:
            self._invites.pop(token, None)
        self.feed(Reply(token, response))

    def _no_reply(self, token: int) -> None:
        self._invites.pop(token, None)
        self.feed(NoReply(token))

    def _fire(self, name: str) -> None:
        self._timers.pop(name, None)
        self.feed(TimerFired(name))

    def _no_ack(self) -> None:
        self.feed(NoAck())

    def _rtp_started(self) -> None:
        self.feed(RtpStarted())

    async def _start_media(self, media: RelaySessions, count: int) -> None:
        try:
            ports = await media.add(count)
        except Exception as exc:  # no free port pair, or a bind error
            self.feed(MediaStarted(str(exc) or type(exc).__name__))
            return
        self.feed(MediaStarted(ports=ports))

    async def _grow_media(self, media: RelaySessions, action: GrowMedia) -> None:
        try:
            ports = await media.add(action.count)
        except Exception as exc:  # no free port pair: the extra m= lines are declined
            self.feed(MediaGrown(action.token, str(exc) or type(exc).__name__))
            return
        self.feed(MediaGrown(action.token, ports=ports))

    async def _resolve(self, action: Resolve) -> None:
        plan = await self.board.resolve_vendor(action.gateway)
        self.feed(VendorResolved(action.gateway, plan))

    # -- the actions -----------------------------------------------------------------------

    def _respond(self, action: Respond) -> None:
        if action.await_ack:
            action.server.on_no_ack = self._no_ack
        action.server.respond(action.response)

    def _confirm(self, action: Confirm) -> None:
        action.server.confirm()

    def _send(self, action: Send) -> None:
        self.board.stack.send(action.data, action.peer)

    def _transact(self, action: Transact) -> None:
        token = action.token
        timeout = TIMER_64T1 if action.timeout is None else action.timeout
        if token == 0:
            self.board.stack.client_transaction(action.request, action.peer,
                                                _ignore_response, _ignore, timeout,
                                                action.resend)
            return
        txn = self.board.stack.client_transaction(
            action.request, action.peer, functools.partial(self._reply, token),
            functools.partial(self._no_reply, token), timeout, action.resend)
        if txn.is_invite:
            self._invites[token] = txn

    def _cancel_invite(self, action: CancelInvite) -> None:
        txn = self._invites.get(action.token)
        cancel = txn.cancel_request() if txn is not None else None
        if cancel is not None:
            self.board.stack.client_transaction(cancel, action.peer, _ignore_response,
                                                _ignore)

    def _set_timer(self, action: SetTimer) -> None:
        old = self._timers.pop(action.name, None)
        if old is not None:
            old.cancel()
        self._timers[action.name] = self.board.timers.call_later(
            action.delay, functools.partial(self._fire, action.name))

    def _cancel_timer(self, action: CancelTimer) -> None:
        handle = self._timers.pop(action.name, None)
        if handle is not None:
            handle.cancel()

    def _start_media_action(self, action: StartMedia) -> None:
        plane = self.board.media_plane
        if plane is None:
            self.feed(MediaStarted("no media relay in this engine"))
            return
        self.media = RelaySessions(plane, action.setup, self._rtp_started)
        self.board.run(self._start_media(self.media, action.count))

    def _stop_media(self, action: StopMedia) -> None:
        if self.media is not None:
            self.media.close()

    def _grow_media_action(self, action: GrowMedia) -> None:
        if self.media is None:
            self.feed(MediaGrown(action.token, "no relay sessions"))
            return
        self.board.run(self._grow_media(self.media, action))

    def _update_media(self, action: UpdateMedia) -> None:
        if self.media is not None:
            self.media.apply(action.updates)

    def _check_media(self, action: CheckMedia) -> None:
        self.feed(MediaReport(self.media.idle() if self.media is not None else {}))

    def _resolve_action(self, action: Resolve) -> None:
        self.board.run(self._resolve(action))

    def _reserve_action(self, action: Reserve) -> None:
        rate = action.rate
        if action.capacity is None and rate is not None and \
                self.board.counts.shared is None:
            # A vendor's call rate on a node of its own: decided here and now.
            granted = self.board.pace_vendor(action.key, rate)
            self.feed(Reserved(action.key, granted, "" if granted else "rate"))
            return
        self.board.run(self._reserve(action))

    async def _reserve(self, action: Reserve) -> None:
        refused_by = await self.board.reserve(action.key, action.capacity, action.rate)
        self.feed(Reserved(action.key, not refused_by, refused_by))

    def _unreserve(self, action: Unreserve) -> None:
        self.board.unreserve(action.key)

    def _occupy(self, action: Occupy) -> None:
        self.board.leg_started(action.destination, action.reserved)

    def _release(self, action: Release) -> None:
        self.board.leg_ended(action.destination)

    def _watch_leg(self, action: WatchLeg) -> None:
        self.board.legs[action.call_id] = (self, Side.CALLEE)
        ladders, ladder = self.board.ladders, self.ladder
        if ladders is not None and ladder is not None:
            attempt = self.call.attempt  # the one being dialled
            if attempt is not None and attempt.dialog is not None and \
                    attempt.dialog.call_id == action.call_id:
                ladders.watch(ladder, action.call_id, ladder_leg(attempt))

    def _forget_leg(self, action: ForgetLeg) -> None:
        self.board.legs.pop(action.call_id, None)

    def _hold_gateway(self, action: HoldGateway) -> None:
        self.board.counts.hold(("retry_ms", action.gateway.id), action.until)

    def _note_started(self, action: NoteStarted) -> None:
        cdrs = self.board.cdrs
        note_started(cdrs.writer, action.record)
        if cdrs.events is not None:  # webhooks (b2bua/webhooks/); the CDR's: CdrWriter
            cdrs.events.call_started(action.record)

    def _note_answered(self, action: NoteAnswered) -> None:
        cdrs = self.board.cdrs
        note_answered(cdrs.writer, action.call_id, action.at, action.dialogs)
        if cdrs.events is not None:
            cdrs.events.call_answered(self.call, action.at)

    def _write_cdr(self, action: WriteCdr) -> None:
        cdrs = self.board.cdrs
        record, attempts = action.record, action.attempts

        def write(media: dict[str, Any]) -> None:
            record.media = json.dumps(media)
            cdrs.submit(record, attempts)
            note_ended(cdrs.writer, record.call_id_in)

        anchor, media, totals = action.media, self.media, self.board.media_totals
        if anchor is not None and media is not None:
            # The CDR carries the relay's final counters (a relay worker reports them
            # once the session's sockets are closed; bounded wait in the pool).
            def final(counters: list[Counters]) -> None:
                stats = anchor.stats(counters)
                if totals is not None:
                    totals.add(stats)
                write(stats)

            media.finish(final)
        else:
            if media is not None:
                media.close()
            write({"relayed": False})

    def _call_ended(self, action: CallEnded) -> None:
        self.board.call_ended(self)


_DO: dict[type, Callable[[CallAdapter, Any], None]] = {
    Respond: CallAdapter._respond,
    Confirm: CallAdapter._confirm,
    Send: CallAdapter._send,
    Transact: CallAdapter._transact,
    CancelInvite: CallAdapter._cancel_invite,
    SetTimer: CallAdapter._set_timer,
    CancelTimer: CallAdapter._cancel_timer,
    StartMedia: CallAdapter._start_media_action,
    StopMedia: CallAdapter._stop_media,
    GrowMedia: CallAdapter._grow_media_action,
    UpdateMedia: CallAdapter._update_media,
    CheckMedia: CallAdapter._check_media,
    Resolve: CallAdapter._resolve_action,
    Reserve: CallAdapter._reserve_action,
    Unreserve: CallAdapter._unreserve,
    Occupy: CallAdapter._occupy,
    Release: CallAdapter._release,
    WatchLeg: CallAdapter._watch_leg,
    ForgetLeg: CallAdapter._forget_leg,
    HoldGateway: CallAdapter._hold_gateway,
    NoteStarted: CallAdapter._note_started,
    NoteAnswered: CallAdapter._note_answered,
    WriteCdr: CallAdapter._write_cdr,
    CallEnded: CallAdapter._call_ended,
}
