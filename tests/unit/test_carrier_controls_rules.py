"""The pure rules of the carrier controls (docs/carrier-controls.md): weighted routing's
split, routing periods, failure-code maps, duration limits, the call-rate limit's
defaults."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from callharness import vendor
from hypothesis import given
from hypothesis import strategies as st

from b2bua.controls.duration import DurationLimit, call_limit
from b2bua.controls.failure_codes import FailureCodeError, FailureCodes
from b2bua.controls.rates import CallRate, retry_after
from b2bua.routing.gateways import RoutingGateway
from b2bua.routing.periods import PeriodError, all_in_force, parse_period
from b2bua.routing.select import IN_ROUTE, explain_route, plan_route
from b2bua.routing.weights import WeightedTurns


def route(gateways: list[RoutingGateway], turns: WeightedTurns, callee: str = "4420",
          full: frozenset[int] = frozenset()) -> list[str]:
    plan = plan_route(callee, gateways, lambda i: 1 if i in full else 0, lambda i: 0,
                      turns=turns)
    return [gw.name for gw in plan.gateways]


def test_seventy_thirty_is_exact_and_interleaved() -> None:
    gws = [vendor(1, "44", weight=70), vendor(2, "44", weight=30)]
    turns = WeightedTurns()
    firsts = [route(gws, turns)[0] for _ in range(1000)]
    assert firsts.count("v1") == 700 and firsts.count("v2") == 300
    # Smooth: every run of ten calls has seven for v1, never thirty in a row for one.
    assert all(firsts[i:i + 10].count("v1") == 7 for i in range(0, 1000, 10))
    assert max(len(run) for run in "".join(
        "a" if f == "v1" else "b" for f in firsts).split("b")) <= 3
    # Every route still holds the other gateway after the first: failover goes on.
    assert sorted(route(gws, turns)) == ["v1", "v2"]


@given(st.lists(st.integers(1, 50), min_size=2, max_size=5), st.integers(1, 400))
def test_any_split_is_within_one_call_per_gateway(weights: list[int], calls: int) -> None:
    gws = [vendor(i + 1, "44", weight=w) for i, w in enumerate(weights)]
    turns = WeightedTurns()
    firsts = [route(gws, turns)[0] for _ in range(calls)]
    total = sum(weights)
    for i, weight in enumerate(weights):
        assert abs(firsts.count(f"v{i + 1}") - calls * weight / total) < len(weights)


def test_a_full_gateway_is_left_out_and_the_others_keep_their_ratio() -> None:
    gws = [vendor(1, "44", weight=2), vendor(2, "44", weight=1),
           vendor(3, "44", weight=1, capacity=1)]
    turns = WeightedTurns()
    firsts = [route(gws, turns, full=frozenset({3}))[0] for _ in range(300)]
    assert (firsts.count("v1"), firsts.count("v2"), firsts.count("v3")) == (200, 100, 0)


def test_weights_only_split_one_priority_and_zero_is_a_fallback() -> None:
    gws = [vendor(1, "44", weight=1), vendor(2, "44", weight=0),
           vendor(3, "44", priority=5, weight=9)]
    turns = WeightedTurns()
    for _ in range(20):
        assert route(gws, turns) == ["v1", "v2", "v3"]


def test_unweighted_groups_keep_rule_two() -> None:
    gws = [vendor(1, "44"), vendor(2, "44")]
    assert route(gws, WeightedTurns()) == ["v1", "v2"]
    assert route(gws, WeightedTurns()) == ["v1", "v2"]


def test_the_dry_run_looks_at_the_turn_without_taking_it() -> None:
    gws = [vendor(1, "44", weight=1), vendor(2, "44", weight=3)]
    turns = WeightedTurns()
    explained = explain_route("4420", gws, lambda i: 0, lambda i: 0, lambda i: 0.0, 0.0,
                              turns)
    again = explain_route("4420", gws, lambda i: 0, lambda i: 0, lambda i: 0.0, 0.0, turns)
    assert [g.name for g in explained.plan.gateways] == ["v2", "v1"]
    assert explained == again
    first = [v for v in explained.verdicts if v.reason == IN_ROUTE and v.position == 1]
    assert first[0].gateway.name == "v2" and "weighted turn" in first[0].detail
    assert route(gws, turns)[0] == "v2"  # the call takes the turn the dry run showed


BERLIN = "Europe/Berlin"


def at(text: str, zone: str = BERLIN) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def test_the_period_in_force_changes_prefixes_priority_and_capacity() -> None:
    day = parse_period({"days": ["mon", "tue", "wed", "thu", "fri"], "begin": "08:00",
                        "end": "18:00", "priority": 9, "capacity": 5})
    night = parse_period({"days": ["mon"], "begin": "18:00", "end": "24:00",
                          "prefixes": ["49"], "capacity": None})
    gw = dataclasses.replace(vendor(1, "44", capacity=10), periods=(day, night))
    # 2026-12-07 is a Monday.
    (morning,) = all_in_force([gw], at("2026-12-07T07:59:59"), BERLIN)
    assert (morning.priority, morning.capacity, morning.prefixes) == (0, 10, ("44",))
    (work,) = all_in_force([gw], at("2026-12-07T08:00:00"), BERLIN)
    assert (work.priority, work.capacity) == (9, 5)
    (last,) = all_in_force([gw], at("2026-12-07T17:59:59"), BERLIN)
    assert last.priority == 9
    (evening,) = all_in_force([gw], at("2026-12-07T18:00:00"), BERLIN)
    assert (evening.priority, evening.capacity, evening.prefixes) == (0, None, ("49",))
    (saturday,) = all_in_force([gw], at("2026-12-12T10:00:00"), BERLIN)
    assert saturday == gw
    # The zone decides: 08:30 in Berlin is 07:30 UTC and 16:30 in Tokyo.
    moment = at("2026-12-07T08:30:00")
    assert [g.priority for z in (BERLIN, "UTC", "Asia/Tokyo")
            for g in all_in_force([gw], moment, z)] == [9, 0, 9]


def test_a_period_can_take_a_gateway_out() -> None:
    off = parse_period({"days": ["sun"], "begin": "00:00", "end": "24:00", "enabled": False})
    gw = dataclasses.replace(vendor(1, "44"), periods=(off,))
    (sunday,) = all_in_force([gw], at("2026-12-13T12:00:00", "UTC"), "UTC")
    assert not sunday.enabled
    assert plan_route("4420", [sunday], lambda i: 0, lambda i: 0).gateways == ()


@pytest.mark.parametrize("raw", [
    {"days": [], "begin": "08:00", "end": "09:00"},
    {"days": ["monday"], "begin": "08:00", "end": "09:00"},
    {"days": ["mon"], "begin": "9:00", "end": "08:00"},
    {"days": ["mon"], "begin": "08:00", "end": "08:00"},
    {"days": ["mon"], "begin": "08:60", "end": "09:00"},
    {"days": ["mon"], "begin": "22:00", "end": "24:01"},
    {"days": ["mon"], "begin": "8h", "end": "09:00"},
])
def test_bad_periods_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(PeriodError):
        parse_period(raw)


def test_failure_code_maps() -> None:
    codes = FailureCodes.parse({"5xx": 503, "404": 480, "6xx": 603})
    assert [codes.sent(c) for c in (500, 502, 503, 404, 486, 487, 600, 200)] == [
        503, 503, 503, 480, 486, 487, 603, 200]
    assert not FailureCodes.parse({})
    for bad in ({"200": 503}, {"5x": 503}, {"404": 200}, {"404": 700}, {"7xx": 503},
                {"404": True}):
        with pytest.raises(FailureCodeError):
            FailureCodes.parse(bad)  # type: ignore[arg-type]


def test_duration_limits() -> None:
    def low(a: int, b: int) -> int:
        return a

    assert call_limit(None, 0, low) == 0
    assert call_limit(None, 3600, low) == 3600
    assert call_limit(DurationLimit.of(0, None), 3600, low) == 0
    assert call_limit(DurationLimit.of(120, None), 3600, low) == 120
    assert call_limit(DurationLimit.of(60, 90), 0, lambda a, b: b) == 90


def test_call_rate_defaults() -> None:
    assert CallRate.of(None, 5) is None
    assert CallRate.of(10, None) == CallRate(10.0, 10)
    assert CallRate.of(0.5, None) == CallRate(0.5, 1)
    assert CallRate.of(2.5, 7) == CallRate(2.5, 7)
    assert [retry_after(w) for w in (0.001, 1.0, 1.2)] == [1, 1, 2]
