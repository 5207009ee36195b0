"""The states of one outbound attempt, and the events that move it, as a table.

An attempt is an INVITE to one destination and, once answered, the dialog it made.
Whether it still counts against the destination's capacity is kept apart (the capacity
is released at the final response, at BYE, or 64*T1 after an unanswered CANCEL, while
the INVITE exchange may still be going on).

The table says every legal move; any other event in a state is a bug in the caller,
raised as :class:`AttemptProtocolError` rather than acted on.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum


class AttemptState(Enum):
    # Members are singletons compared by identity: hashed by identity too, in C, not by
    # Enum's __hash__ in Python (the table is read at every response of every attempt).
    __hash__ = object.__hash__

    NEW = "new"  # built, INVITE not sent (a DNS failure stays here)
    CALLING = "calling"  # INVITE sent, nothing back yet
    PROCEEDING = "proceeding"  # a provisional came: a CANCEL may be sent
    CANCEL_WAIT = "cancel_wait"  # abandoned before any provisional: CANCEL on the first
    CANCELLING = "cancelling"  # abandoned and CANCEL sent: the INVITE's final is awaited
    ANSWERED = "answered"  # a 2xx: the destination's dialog is up
    DONE = "done"  # a final failure, no answer at all, or the dialog hung up


class AttemptEvent(Enum):
    __hash__ = object.__hash__

    SEND = "send"  # the INVITE goes out
    PROVISIONAL = "provisional"  # a 1xx
    ANSWER = "answer"  # a 2xx
    FAILURE = "failure"  # a final response of 300 or more
    TIMEOUT = "timeout"  # no response at all within the INVITE timeout
    ABANDON = "abandon"  # a timer, the caller's CANCEL or a teardown gives it up
    BYE = "bye"  # we hang up the answered dialog


S, E = AttemptState, AttemptEvent
TRANSITIONS: Mapping[tuple[AttemptState, AttemptEvent], AttemptState] = {
    (S.NEW, E.SEND): S.CALLING,
    (S.CALLING, E.PROVISIONAL): S.PROCEEDING,
    (S.CALLING, E.ANSWER): S.ANSWERED,
    (S.CALLING, E.FAILURE): S.DONE,
    (S.CALLING, E.TIMEOUT): S.DONE,
    (S.CALLING, E.ABANDON): S.CANCEL_WAIT,
    # The INVITE transaction stops its timeout at the first response (RFC 3261 17.1.1.2):
    # from here on only a final response ends the exchange.
    (S.PROCEEDING, E.PROVISIONAL): S.PROCEEDING,
    (S.PROCEEDING, E.ANSWER): S.ANSWERED,
    (S.PROCEEDING, E.FAILURE): S.DONE,
    (S.PROCEEDING, E.ABANDON): S.CANCELLING,
    (S.CANCEL_WAIT, E.PROVISIONAL): S.CANCELLING,
    (S.CANCEL_WAIT, E.ANSWER): S.ANSWERED,  # raced the CANCEL: ACK, then BYE
    (S.CANCEL_WAIT, E.FAILURE): S.DONE,
    (S.CANCEL_WAIT, E.TIMEOUT): S.DONE,
    # No second ABANDON in CANCEL_WAIT: it is entered only by a teardown, which ends the
    # call (an attempt's timers start at a provisional, so they give up PROCEEDING ones).
    (S.CANCELLING, E.PROVISIONAL): S.CANCELLING,
    (S.CANCELLING, E.ANSWER): S.ANSWERED,  # raced the CANCEL: ACK, then BYE
    (S.CANCELLING, E.FAILURE): S.DONE,  # the 487, or any final
    (S.CANCELLING, E.ABANDON): S.CANCELLING,
    (S.ANSWERED, E.BYE): S.DONE,
}
del S, E

ABANDONED = frozenset({AttemptState.CANCEL_WAIT, AttemptState.CANCELLING})
# The INVITE exchange still open: a final response may come.
PENDING = frozenset({AttemptState.CALLING, AttemptState.PROCEEDING, *ABANDONED})


class AttemptProtocolError(RuntimeError):
    """An event the attempt's state does not take."""

    def __init__(self, state: AttemptState, event: AttemptEvent) -> None:
        super().__init__(f"attempt in state {state.value} cannot take {event.value}")
        self.state = state
        self.event = event


def next_state(state: AttemptState, event: AttemptEvent) -> AttemptState:
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise AttemptProtocolError(state, event) from None
