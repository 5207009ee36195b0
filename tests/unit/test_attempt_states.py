"""The outbound attempt's state table (b2bua/calls/attempt_state.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bua.calls.attempt_state import (
    ABANDONED,
    PENDING,
    TRANSITIONS,
    AttemptEvent,
    AttemptProtocolError,
    AttemptState,
    next_state,
)

S, E = AttemptState, AttemptEvent


def walk(*events: AttemptEvent) -> AttemptState:
    state = S.NEW
    for event in events:
        state = next_state(state, event)
    return state


@pytest.mark.parametrize(("events", "end"), [
    # answered at once, then hung up
    ((E.SEND, E.ANSWER, E.BYE), S.DONE),
    # ringing, then answered
    ((E.SEND, E.PROVISIONAL, E.PROVISIONAL, E.ANSWER), S.ANSWERED),
    # a vendor's failure before or after a provisional
    ((E.SEND, E.FAILURE), S.DONE),
    ((E.SEND, E.PROVISIONAL, E.FAILURE), S.DONE),
    # no response at all
    ((E.SEND, E.TIMEOUT), S.DONE),
    # a ringing timer gives it up: CANCEL, then the 487
    ((E.SEND, E.PROVISIONAL, E.ABANDON, E.FAILURE), S.DONE),
    # the caller cancels before anything came back: the CANCEL waits for the first 1xx
    ((E.SEND, E.ABANDON), S.CANCEL_WAIT),
    ((E.SEND, E.ABANDON, E.PROVISIONAL), S.CANCELLING),
    ((E.SEND, E.ABANDON, E.PROVISIONAL, E.FAILURE), S.DONE),
    # ... or nothing ever comes
    ((E.SEND, E.ABANDON, E.TIMEOUT), S.DONE),
    # the 200 races the CANCEL: answered, then hung up by us
    ((E.SEND, E.PROVISIONAL, E.ABANDON, E.ANSWER, E.BYE), S.DONE),
    ((E.SEND, E.ABANDON, E.ANSWER, E.BYE), S.DONE),
    # a timer and the caller's CANCEL both give it up
    ((E.SEND, E.PROVISIONAL, E.ABANDON, E.ABANDON), S.CANCELLING),
])
def test_the_ways_an_attempt_goes(events: tuple[AttemptEvent, ...], end: AttemptState) -> None:
    assert walk(*events) is end


@pytest.mark.parametrize(("events", "illegal"), [
    ((), E.PROVISIONAL),  # nothing can come back before the INVITE went
    ((E.SEND,), E.SEND),  # sent once
    ((E.SEND,), E.BYE),  # no dialog to hang up before an answer
    ((E.SEND, E.PROVISIONAL), E.TIMEOUT),  # the INVITE timeout stops at the first 1xx
    ((E.SEND, E.ANSWER), E.FAILURE),  # one final response per INVITE
    ((E.SEND, E.ANSWER), E.ABANDON),  # an answered leg is hung up, not cancelled
    ((E.SEND, E.FAILURE), E.ANSWER),
    ((E.SEND, E.FAILURE), E.ABANDON),
    ((E.SEND, E.ANSWER, E.BYE), E.BYE),
])
def test_events_a_state_does_not_take_raise(events: tuple[AttemptEvent, ...],
                                            illegal: AttemptEvent) -> None:
    state = walk(*events)
    with pytest.raises(AttemptProtocolError) as caught:
        next_state(state, illegal)
    assert (caught.value.state, caught.value.event) == (state, illegal)
    assert state.value in str(caught.value) and illegal.value in str(caught.value)


def test_the_sets_of_states() -> None:
    assert {S.CANCEL_WAIT, S.CANCELLING} == ABANDONED
    # A final response is taken exactly where the INVITE exchange is still open.
    for state in S:
        assert ((state, E.FAILURE) in TRANSITIONS) is (state in PENDING)
        assert ((state, E.ANSWER) in TRANSITIONS) is (state in PENDING)


@given(st.lists(st.sampled_from(list(E)), max_size=12))
def test_any_order_of_events_keeps_the_invariants(events: list[AttemptEvent]) -> None:
    """Random event orders, legal or not: a refused event changes nothing, and the
    table's promises hold along the way."""
    state = S.NEW
    seen_abandon = False
    for event in events:
        try:
            after = next_state(state, event)
        except AttemptProtocolError:
            continue
        if state is S.DONE:
            raise AssertionError("DONE took an event")
        if after in ABANDONED:
            assert event in (E.ABANDON, E.PROVISIONAL)
        if state in ABANDONED:
            assert after not in (S.CALLING, S.PROCEEDING)  # never un-abandoned
        if event is E.ABANDON:
            seen_abandon = True
        if after is S.CANCELLING:
            assert seen_abandon
        state = after
    for event in E:
        if state is S.DONE:
            with pytest.raises(AttemptProtocolError):
                next_state(state, event)
