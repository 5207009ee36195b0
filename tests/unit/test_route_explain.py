"""The routing order explained (b2bua.routing.select.explain_route): every gateway's
verdict, and the same plan as plan_route for the same state."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from b2bua.routing.gateways import RoutingGateway
from b2bua.routing.select import (
    CUT_BY_TERMINATE,
    DISABLED,
    FULL,
    IN_ROUTE,
    NO_PREFIX_MATCH,
    RETRY_AFTER,
    ROUTE_REASONS,
    GatewayVerdict,
    RouteExplanation,
    explain_route,
    match_length,
    matching_prefix,
    plan_route,
)

NOW = 1_000_000.0


def gw(gid: int, prefixes: tuple[str, ...] = (), *, priority: int = 0,
       mode: str = "terminate", capacity: int | None = None, enabled: bool = True
       ) -> RoutingGateway:
    return RoutingGateway(
        id=gid, name=f"gw{gid}", host=f"203.0.113.{gid % 250 + 1}", port=5060,
        transport="udp", prefixes=prefixes, priority=priority, prefix_mode=mode,
        capacity=capacity, enabled=enabled,
    )


def explain(callee: str, gateways: Iterable[RoutingGateway],
            current: Mapping[int, int] | None = None, total: Mapping[int, int] | None = None,
            held: Mapping[int, float] | None = None) -> RouteExplanation:
    cur, tot, hold = dict(current or {}), dict(total or {}), dict(held or {})
    return explain_route(callee, gateways, lambda i: cur.get(i, 0), lambda i: tot.get(i, 0),
                         lambda i: hold.get(i, 0.0), NOW)


def by_id(result: RouteExplanation) -> dict[int, GatewayVerdict]:
    return {v.gateway.id: v for v in result.verdicts}


def route(result: RouteExplanation) -> list[int]:
    return [g.id for g in result.plan.gateways]


# -- each reason ----------------------------------------------------------------------------


def test_a_prefix_that_does_not_match_is_out() -> None:
    result = explain("4420001", [gw(1, ("33", "34")), gw(2, ("44",))])
    verdict = by_id(result)[1]
    assert (verdict.reason, verdict.prefix, verdict.position) == (NO_PREFIX_MATCH, None, None)
    assert verdict.detail == 'none of its prefixes ("33", "34") starts the callee'
    assert by_id(result)[2].reason == IN_ROUTE and by_id(result)[2].prefix == "44"


def test_the_longest_matching_prefix_is_shown_and_wins() -> None:
    result = explain("4420001", [gw(1, ("4", "44"), mode="continue"),
                                 gw(2, ("442",), mode="continue")])
    verdicts = by_id(result)
    assert route(result) == [2, 1]
    assert (verdicts[2].position, verdicts[2].prefix, verdicts[2].order_by) == (1, "442", None)
    assert verdicts[2].order == 'first: its prefix "442" is the longest match'
    assert (verdicts[1].position, verdicts[1].prefix, verdicts[1].order_by) == (2, "44", "prefix")
    assert verdicts[1].order == 'after "gw2": its prefix "44" is shorter than "442"'


def test_a_gateway_without_prefixes_matches_as_the_shortest() -> None:
    result = explain("4420001", [gw(1, mode="continue"), gw(2, ("44",), mode="continue")])
    verdicts = by_id(result)
    assert route(result) == [2, 1]
    assert verdicts[1].prefix == "" and verdicts[1].order_by == "prefix"
    assert "it has no prefixes" in verdicts[1].order


def test_a_longer_terminate_prefix_cuts_the_shorter_ones_off() -> None:
    result = explain("4420001", [gw(1, ("4420",), mode="terminate"), gw(2, ("44",)),
                                 gw(3, ())])
    verdicts = by_id(result)
    assert route(result) == [1]
    for gid in (2, 3):
        assert verdicts[gid].reason == CUT_BY_TERMINATE
        assert verdicts[gid].position is None and verdicts[gid].rank is None
        assert 'prefix_mode terminate of "gw1"' in verdicts[gid].detail
    assert result.plan.matched == 1  # as plan_route counts: only the groups reached


def test_a_full_or_held_terminate_gateway_still_cuts() -> None:
    gateways = [gw(1, ("4420",), mode="terminate", capacity=1), gw(2, ("44",))]
    result = explain("4420001", gateways, current={1: 1})
    assert [v.reason for v in result.verdicts] == [FULL, CUT_BY_TERMINATE]
    assert route(result) == []


def test_priority_orders_within_a_prefix_length() -> None:
    result = explain("4420001", [gw(1, ("44",), priority=5), gw(2, ("44",), priority=1)])
    verdicts = by_id(result)
    assert route(result) == [2, 1]
    assert (verdicts[1].order_by, verdicts[1].rank) == ("priority", 2)
    assert verdicts[1].order == 'after "gw2": priority 5 comes after 1'


def test_load_then_calls_so_far_then_id_order_equal_priorities() -> None:
    gateways = [gw(1, ("44",), capacity=10), gw(2, ("44",), capacity=10),
                gw(3, ("44",), capacity=10), gw(4, ("44",), capacity=10)]
    result = explain("44", gateways, current={1: 5, 2: 1, 3: 1, 4: 1},
                     total={2: 7, 3: 7, 4: 3})
    verdicts = by_id(result)
    assert route(result) == [4, 2, 3, 1]
    assert [verdicts[g].order_by for g in (4, 2, 3, 1)] == [None, "total_calls", "id", "load"]
    assert verdicts[1].order == 'after "gw3": more loaded (0.50 against 0.10)'
    assert verdicts[1].load == 0.5 and verdicts[1].current_calls == 5


def test_a_full_gateway_is_out_with_its_count() -> None:
    result = explain("44", [gw(1, ("44",), capacity=1), gw(2, ("44",), priority=1)],
                     current={1: 1})
    verdict = by_id(result)[1]
    assert (verdict.reason, verdict.rank, verdict.position) == (FULL, 1, None)
    assert verdict.detail == "at capacity: 1 of 1 calls"
    assert route(result) == [2] and by_id(result)[2].position == 1


def test_a_retry_after_hold_is_out_until_it_ends() -> None:
    gateways = [gw(1, ("44",)), gw(2, ("44",), priority=1)]
    held = explain("44", gateways, held={1: NOW + 120})
    verdict = by_id(held)[1]
    assert (verdict.reason, verdict.held_until) == (RETRY_AFTER, NOW + 120)
    assert verdict.detail == "held out of routing by the vendor's Retry-After for 120 s more"
    over = explain("44", gateways, held={1: NOW - 1})
    assert by_id(over)[1].reason == IN_ROUTE and by_id(over)[1].held_until is None
    assert route(over) == [1, 2]


def test_a_disabled_gateway_is_out_and_has_no_say_in_prefix_mode() -> None:
    result = explain("4420", [gw(1, ("4420",), enabled=False), gw(2, ("44",))])
    verdicts = by_id(result)
    assert (verdicts[1].reason, verdicts[1].detail) == (DISABLED, "disabled")
    assert verdicts[1].prefix == "4420"
    assert route(result) == [2]
    assert result.plan.matched == 2
    off = explain("33", [gw(1, ("44",), enabled=False)])
    assert by_id(off)[1].reason == NO_PREFIX_MATCH
    assert by_id(off)[1].detail.endswith("(and it is disabled)")


def test_ranked_gateways_come_first_in_rank_order() -> None:
    gateways = [gw(9, ("1",)), gw(5, ("44",), enabled=False), gw(3, ("44",), priority=2),
                gw(4, ("44",), priority=1, capacity=0)]
    result = explain("44", gateways)
    assert [(v.gateway.id, v.reason, v.rank) for v in result.verdicts] == [
        (4, FULL, 1), (3, IN_ROUTE, 2), (5, DISABLED, None), (9, NO_PREFIX_MATCH, None)]


# -- the same plan as plan_route --------------------------------------------------------------

PREFIXES = st.lists(st.text(alphabet="0123", min_size=1, max_size=3), max_size=3)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, list[RoutingGateway], dict[int, int],
                                        dict[int, int], dict[int, float]]:
    count = draw(st.integers(0, 8))
    gids = draw(st.lists(st.integers(1, 1000), min_size=count, max_size=count, unique=True))
    gateways = [
        gw(gid, tuple(draw(PREFIXES)), priority=draw(st.integers(0, 3)),
           mode=draw(st.sampled_from(["terminate", "continue"])),
           capacity=draw(st.none() | st.integers(0, 5)), enabled=draw(st.booleans()))
        for gid in gids
    ]
    current = {gid: draw(st.integers(0, 6)) for gid in gids}
    total = {gid: draw(st.integers(0, 3)) for gid in gids}
    held = {gid: NOW + draw(st.sampled_from([-10.0, 0.0, 0.5, 60.0])) for gid in gids}
    return draw(st.text(alphabet="0123", max_size=5)), gateways, current, total, held


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_the_explanation_has_plan_routes_order_and_a_verdict_for_every_gateway(
    scenario: tuple[str, list[RoutingGateway], dict[int, int], dict[int, int],
                    dict[int, float]],
) -> None:
    callee, gateways, current, total, held = scenario
    plan = plan_route(callee, gateways, current.__getitem__, total.__getitem__,
                      lambda i: held[i] > NOW)
    result = explain(callee, gateways, current, total, held)
    assert result.plan == plan
    assert sorted(v.gateway.id for v in result.verdicts) == sorted(g.id for g in gateways)
    in_route = sorted((v for v in result.verdicts if v.reason == IN_ROUTE),
                      key=lambda v: v.position or 0)
    assert [v.gateway for v in in_route] == list(plan.gateways)
    assert [v.position for v in in_route] == list(range(1, len(plan.gateways) + 1))
    for verdict in result.verdicts:
        g = verdict.gateway
        assert verdict.reason in ROUTE_REASONS
        assert (verdict.position is not None) == (verdict.reason == IN_ROUTE)
        prefix = matching_prefix(g, callee)
        assert verdict.prefix == prefix
        assert (prefix is None and match_length(g, callee) == -1) or \
            len(prefix or "") == match_length(g, callee)
        if verdict.reason == NO_PREFIX_MATCH:
            assert match_length(g, callee) < 0
        elif verdict.reason == DISABLED:
            assert not g.enabled
        elif verdict.reason == FULL:
            assert g.capacity is not None and current[g.id] >= g.capacity
        elif verdict.reason == RETRY_AFTER:
            assert held[g.id] > NOW and verdict.held_until == held[g.id]
    # Ranks run 1..n over the gateways rule 2 ordered, in the order listed.
    ranks = [v.rank for v in result.verdicts if v.rank is not None]
    assert ranks == list(range(1, len(ranks) + 1))
