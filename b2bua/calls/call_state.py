"""The states of a call as the caller sees it, and the moves between them, as a table.

Each attempt has its own table (``attempt_state.py``); this one is the caller's leg:
routing, an INVITE out to some destination, early media relayed, the 200 sent, its ACK
received, the end. Any other move is a bug in the core, raised as
:class:`CallProtocolError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum


class CallState(Enum):
    __hash__ = object.__hash__

    ROUTING = "routing"
    PROCEEDING = "proceeding"  # INVITE sent to a destination, nothing back beyond 100
    EARLY = "early"  # a 18x relayed to the caller
    ANSWERED = "answered"  # 200 sent to the caller, waiting for its ACK
    CONFIRMED = "confirmed"
    ENDED = "ended"


class CallStep(Enum):
    __hash__ = object.__hash__

    DIAL = "dial"  # an attempt's INVITE goes out
    PROGRESS = "progress"  # a provisional (not 100) relayed to the caller
    ANSWER = "answer"  # the 200 relayed to the caller
    ACK = "ack"  # the caller's ACK of it
    END = "end"


S, E = CallState, CallStep
TRANSITIONS: Mapping[tuple[CallState, CallStep], CallState] = {
    (S.ROUTING, E.DIAL): S.PROCEEDING,
    (S.PROCEEDING, E.DIAL): S.PROCEEDING,  # the next destination
    (S.EARLY, E.DIAL): S.EARLY,  # the caller heard ringing: it stays early
    (S.PROCEEDING, E.PROGRESS): S.EARLY,
    (S.EARLY, E.PROGRESS): S.EARLY,
    (S.PROCEEDING, E.ANSWER): S.ANSWERED,
    (S.EARLY, E.ANSWER): S.ANSWERED,
    (S.ANSWERED, E.ACK): S.CONFIRMED,
    (S.ROUTING, E.END): S.ENDED,
    (S.PROCEEDING, E.END): S.ENDED,
    (S.EARLY, E.END): S.ENDED,
    (S.ANSWERED, E.END): S.ENDED,
    (S.CONFIRMED, E.END): S.ENDED,
}
del S, E

# The caller has its final response: nothing more is sent in its INVITE transaction.
FINAL_SENT = frozenset({CallState.ANSWERED, CallState.CONFIRMED, CallState.ENDED})


class CallProtocolError(RuntimeError):
    """A move the call's state does not allow."""

    def __init__(self, state: CallState, step: CallStep) -> None:
        super().__init__(f"call in state {state.value} cannot take {step.value}")
        self.state = state
        self.step = step


def next_call_state(state: CallState, step: CallStep) -> CallState:
    try:
        return TRANSITIONS[state, step]
    except KeyError:
        raise CallProtocolError(state, step) from None
