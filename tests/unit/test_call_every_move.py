"""Every move of the call's table and of an attempt's table, taken by a whole call.

``test_call_core.py`` checks the tables on their own and walks the call rule by rule;
this module shows that the walked calls reach every state by every legal move, so no row
of either table is dead or only reachable in theory. Each move is recorded as the core
takes it (the tables' lookups are wrapped), and the union over the scenarios below must
be the whole table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest
from callharness import ANSWER, CallHarness, Context, vendor
from test_call_core import LiveContext, caller_bye, connect, finished, make

import b2bua.calls.attempt as attempt_module
import b2bua.calls.call as call_module
from b2bua.calls.attempt_state import TRANSITIONS as ATTEMPT_TRANSITIONS
from b2bua.calls.attempt_state import AttemptEvent, AttemptState
from b2bua.calls.call_state import TRANSITIONS as CALL_TRANSITIONS
from b2bua.calls.call_state import CallState, CallStep
from b2bua.calls.events import CallerCancel, HangUp, NoAck, Side
from b2bua.routing.dns import Plan

CallMove = tuple[CallState, CallStep]
AttemptMove = tuple[AttemptState, AttemptEvent]


def two() -> CallHarness:
    return make(vendor(1, "44", priority=1), vendor(2, "44", priority=2))


def no_route() -> None:
    """ROUTING -END: nothing matches the callee."""
    h = make(vendor(1, "33"))
    finished(h)
    assert h.caller_statuses[-1] == 404 and h.call.attempts == []


def failover_then_answer_without_ringing() -> None:
    """Attempt 1 fails at once (CALLING -FAILURE), the call dials again from PROCEEDING,
    attempt 2 answers with no provisional (CALLING -ANSWER, PROCEEDING -ANSWER)."""
    h = two()
    h.answer(1, 503)
    h.answer(2, 200, ANSWER)
    h.ack_from_caller()
    caller_bye(h)


def ringing_failover_then_answer() -> None:
    """Two provisionals (CALLING and PROCEEDING -PROVISIONAL), a failure after ringing
    (PROCEEDING -FAILURE) dials from EARLY, then EARLY -PROGRESS, EARLY -ANSWER."""
    h = two()
    h.answer(1, 180)
    h.answer(1, 183)
    h.answer(1, 480)
    h.answer(2, 180)
    h.answer(2, 200, ANSWER)
    h.ack_from_caller()
    h.in_dialog(Side.CALLEE, "BYE")
    finished(h)


def silence_then_cancel_before_any_provisional() -> None:
    """No answer at all (CALLING -TIMEOUT); the caller's CANCEL before the next attempt's
    first provisional (CALLING -ABANDON, PROCEEDING -END), which then times out too
    (CANCEL_WAIT -TIMEOUT)."""
    h = two()
    h.silence(1)
    h.feed(CallerCancel())
    h.silence(2)
    finished(h)


def cancel_wait_then_provisional_then_ringing() -> None:
    """CANCEL_WAIT -PROVISIONAL (the CANCEL goes), CANCELLING -PROVISIONAL, then the 487
    (CANCELLING -FAILURE); a teardown after the end changes nothing."""
    h = two()
    h.feed(CallerCancel())
    h.feed(HangUp("shutdown"))
    h.answer(1, 100)
    h.answer(1, 180)
    h.answer(1, 487)
    assert len(h.ledger.cancels) == 1
    finished(h)


def cancel_wait_failure_and_answer() -> None:
    """CANCEL_WAIT -FAILURE on one call, CANCEL_WAIT -ANSWER (raced: ACK, BYE) on another."""
    h = two()
    h.feed(CallerCancel())
    h.answer(1, 486)
    finished(h)
    h = two()
    h.feed(CallerCancel())
    h.answer(1, 200, ANSWER)
    h.in_dialog(Side.CALLEE, "BYE")
    finished(h)


def ringing_then_cancel_and_a_raced_answer() -> None:
    """EARLY -END by the caller's CANCEL: PROCEEDING -ABANDON, then the 200 raced it
    (CANCELLING -ANSWER) and the dialog is hung up (ANSWERED -BYE)."""
    h = two()
    h.answer(1, 180)
    h.feed(CallerCancel())
    h.answer(1, 200, ANSWER)
    finished(h)


def answered_without_ack() -> None:
    """ANSWERED -END: the caller never ACKs the 200."""
    h = two()
    h.answer(1, 200, ANSWER)
    h.feed(NoAck())
    finished(h)


def confirmed_then_ended() -> None:
    """ANSWERED -ACK, CONFIRMED -END by an operator."""
    h = two()
    connect(h, 1)
    h.feed(HangUp("operator"))
    finished(h)


def given_up_twice() -> None:
    """The attempt's timer gives attempt 1 up while the next vendor's name is still being
    looked up, so attempt 1 is still the call's when the caller cancels: an attempt given
    up twice (CANCELLING -ABANDON) sends one CANCEL."""
    second = dataclasses.replace(vendor(2, "44", priority=2), host="vendor.test", port=None)
    ctx = LiveContext(gateways=[vendor(1, "44", priority=1, ringing_timeout=2), second],
                      plans={2: Plan(missing=(("vendor.test", "A"),))})
    h = make(ctx=ctx)
    h.answer(1, 180)
    h.advance(2)
    assert len(h.ledger.cancels) == 1 and len(h.call.attempts) == 1
    h.feed(CallerCancel())
    h.answer(1, 487)
    finished(h)
    assert len(h.ledger.cancels) == 1 and h.caller_statuses == [100, 180, 487]


SCENARIOS: list[Callable[[], None]] = [
    no_route, failover_then_answer_without_ringing, ringing_failover_then_answer,
    silence_then_cancel_before_any_provisional, cancel_wait_then_provisional_then_ringing,
    cancel_wait_failure_and_answer, ringing_then_cancel_and_a_raced_answer,
    answered_without_ack, confirmed_then_ended, given_up_twice,
]


@pytest.fixture
def moves(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[set[CallMove], set[AttemptMove]]]:
    """Record each move the core and its attempts take, through the tables' lookups."""
    call_moves: set[CallMove] = set()
    attempt_moves: set[AttemptMove] = set()
    next_call_state = call_module.next_call_state  # type: ignore[attr-defined]
    next_state = attempt_module.next_state  # type: ignore[attr-defined]

    def call_step(state: CallState, step: CallStep) -> CallState:
        target = next_call_state(state, step)
        call_moves.add((state, step))
        return target

    def attempt_step(state: AttemptState, event: AttemptEvent) -> AttemptState:
        target = next_state(state, event)
        attempt_moves.add((state, event))
        return target

    monkeypatch.setattr(call_module, "next_call_state", call_step)
    monkeypatch.setattr(attempt_module, "next_state", attempt_step)
    yield call_moves, attempt_moves


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_each_scenario_is_a_whole_call(scenario: Callable[[], None],
                                       moves: tuple[set[CallMove], set[AttemptMove]]) -> None:
    scenario()
    call_moves, _ = moves
    assert (CallState.ROUTING, CallStep.END) in call_moves or any(
        step is CallStep.DIAL for _, step in call_moves)


def test_the_scenarios_take_every_move_of_both_tables(
        moves: tuple[set[CallMove], set[AttemptMove]]) -> None:
    for scenario in SCENARIOS:
        scenario()
    call_moves, attempt_moves = moves
    assert sorted(set(CALL_TRANSITIONS) - call_moves, key=str) == []
    assert sorted(set(ATTEMPT_TRANSITIONS) - attempt_moves, key=str) == []
    assert call_moves <= set(CALL_TRANSITIONS) and attempt_moves <= set(ATTEMPT_TRANSITIONS)


def test_the_recording_sees_an_illegal_move_as_the_core_does(
        moves: tuple[set[CallMove], set[AttemptMove]]) -> None:
    # The wrapped lookups still raise: a move outside the table is never recorded.
    with pytest.raises(Exception, match="cannot take"):
        call_module.next_call_state(  # type: ignore[attr-defined]
            CallState.ENDED, CallStep.ANSWER)
    assert moves == (set(), set())
    assert Context  # the harness's context is the one the scenarios use
