"""Carrier controls in the call core (docs/carrier-controls.md), walked with a fake clock:
maximum call duration, failure-code maps, a vendor at its call rate skipped with a CDR
attempt that says so."""

from __future__ import annotations

import dataclasses

from callharness import ORIGIN, CallHarness, Context, vendor
from test_call_core import byes, connect, finished, make, outcomes, tried

from b2bua.calls.call_state import CallState
from b2bua.calls.events import Side
from b2bua.controls.duration import DurationLimit
from b2bua.controls.failure_codes import FailureCodes
from b2bua.controls.rates import CallRate


def limited(seconds: int | None, upper: int | None = None, **params: object) -> CallHarness:
    origin = dataclasses.replace(ORIGIN, max_duration=DurationLimit.of(seconds, upper))
    return make(vendor(1, "44"), origin=origin, **params)


def test_the_call_is_cut_at_its_mapping_gateways_maximum_duration() -> None:
    h = limited(90)
    connect(h, 1)
    h.advance(89.9)
    assert h.call.state is CallState.CONFIRMED
    h.advance(0.2)
    assert len(byes(h, Side.CALLER)) == 1 and len(byes(h, Side.CALLEE)) == 1
    finished(h)
    assert (h.cdr.hangup_by, h.cdr.termination_reason, h.cdr.duration) == (
        "system", "maximum duration", 90.0)


def test_the_limit_counts_from_the_answer_not_the_ringing() -> None:
    h = limited(10)
    h.answer(1, 180)
    h.advance(30)
    assert h.call.state is not CallState.ENDED
    h.answer(1, 200)
    h.ack_from_caller()
    h.advance(10)
    finished(h)
    assert h.cdr.termination_reason == "maximum duration"
    assert h.cdr.duration == 10


def test_the_system_parameter_applies_without_the_gateways_own() -> None:
    h = limited(None, SS_MAX_CALL_DURATION=60)
    connect(h, 1)
    h.advance(60)
    finished(h)
    assert h.cdr.termination_reason == "maximum duration"


def test_zero_is_no_limit_even_with_a_system_limit() -> None:
    h = limited(0, SS_MAX_CALL_DURATION=60)
    connect(h, 1)
    h.advance(3600)
    assert h.call.state is CallState.CONFIRMED
    assert "limit" not in h.call.timers


def test_a_range_draws_the_limit_at_the_start() -> None:
    ctx = Context(gateways=[vendor(1, "44")])
    drawn: list[tuple[int, int]] = []
    ctx.draw = lambda low, high: drawn.append((low, high)) or 75  # type: ignore[func-returns-value]
    origin = dataclasses.replace(ORIGIN, max_duration=DurationLimit.of(60, 90))
    h = CallHarness(ctx, origin=origin)
    assert drawn == [(60, 90)] and h.call.max_duration == 75
    connect(h, 1)
    h.advance(75)
    finished(h)


def test_a_caller_that_hangs_up_first_leaves_no_limit_timer() -> None:
    h = limited(90)
    connect(h, 1)
    h.advance(5)
    h.in_dialog(Side.CALLER, "BYE")
    finished(h)
    assert h.cdr.termination_reason != "maximum duration"


def mapped(rules: dict[str, int], *gateways: object) -> CallHarness:
    origin = dataclasses.replace(ORIGIN, failure_codes=FailureCodes.parse(rules))
    return make(*(gateways or (vendor(1, "44"),)), origin=origin)  # type: ignore[arg-type]


def test_a_vendors_code_is_mapped_for_the_caller_and_kept_in_the_cdr() -> None:
    h = mapped({"5xx": 503, "404": 480})
    h.answer(1, 404)
    finished(h)
    assert h.caller_statuses[-1] == 480
    assert (h.cdr.final_code, h.cdr.caller_code) == (404, 480)
    assert h.cdr.final_reason == "Not Found"


def test_a_class_maps_every_code_in_it_and_an_exact_code_wins() -> None:
    h = mapped({"5xx": 503, "502": 486})
    h.answer(1, 500)
    assert h.caller_statuses[-1] == 503
    h2 = mapped({"5xx": 503, "502": 486})
    h2.answer(1, 502)
    assert h2.caller_statuses[-1] == 486


def test_an_unmapped_code_and_a_cancel_go_through_unchanged() -> None:
    h = mapped({"5xx": 503})
    h.answer(1, 486)
    assert h.caller_statuses[-1] == 486
    assert h.cdr.caller_code == 486
    h2 = mapped({"4xx": 503})
    h2.answer(1, 180)
    from b2bua.calls.events import CallerCancel
    h2.feed(CallerCancel())
    assert h2.caller_statuses[-1] == 487


def test_the_switchs_own_failure_is_mapped_too() -> None:
    h = mapped({"408": 480})
    h.silence(1)  # the only vendor never answered
    finished(h)
    assert h.caller_statuses[-1] == 480
    assert (h.cdr.final_code, h.cdr.caller_code) == (408, 480)


def test_an_answered_call_has_the_same_code_for_both() -> None:
    h = mapped({"5xx": 503})
    connect(h, 1)
    h.in_dialog(Side.CALLER, "BYE")
    assert (h.cdr.final_code, h.cdr.caller_code) == (200, 200)


def test_a_vendor_at_its_rate_is_skipped_and_the_attempt_says_so() -> None:
    rate = CallRate(5.0, 5)
    ctx = Context(gateways=[vendor(1, "44", priority=1, call_rate=rate),
                            vendor(2, "44", priority=2)])
    ctx.over_rate = {1}
    h = CallHarness(ctx)
    assert len(h.ledger.reserving) == 1 and h.ledger.reserving[0].rate == rate
    h.reserved()
    assert tried(h) == ["v2"]
    connect(h, 2)
    h.in_dialog(Side.CALLER, "BYE")
    finished(h)
    assert outcomes(h) == ["rate_limited", "answered"]
    assert h.attempt_records[0]["call_id"] is None
    assert h.cdr.routing_gateway == "v2"


def test_every_vendor_at_its_rate_gives_the_caller_503() -> None:
    rate = CallRate(1.0, 1)
    ctx = Context(gateways=[vendor(1, "44", call_rate=rate)])
    ctx.over_rate = {1}
    h = CallHarness(ctx)
    h.reserved()
    finished(h)
    assert h.caller_statuses[-1] == 503
    assert h.cdr.termination_reason == "every routing gateway is at its call rate"
    assert outcomes(h) == ["rate_limited"]


def test_a_vendor_within_its_rate_is_dialled() -> None:
    ctx = Context(gateways=[vendor(1, "44", call_rate=CallRate(5.0, 5))])
    h = CallHarness(ctx)
    h.reserved()
    assert tried(h) == ["v1"]
    connect(h, 1)
