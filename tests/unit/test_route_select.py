"""VOS3000 routing order (b2bua.routing.select.plan_route)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from b2bua.routing.gateways import RoutingGateway
from b2bua.routing.select import RoutePlan, match_length, plan_route

NO_MATCH = "no routing gateway matches the callee"
ALL_UNUSABLE = "every matching routing gateway is disabled, full or unavailable"


def gw(
    gid: int,
    prefixes: tuple[str, ...] = (),
    *,
    priority: int = 0,
    mode: str = "terminate",
    capacity: int | None = None,
    enabled: bool = True,
) -> RoutingGateway:
    return RoutingGateway(
        id=gid, name=f"gw{gid}", host=f"203.0.113.{gid % 250 + 1}", port=5060,
        transport="udp", prefixes=prefixes, priority=priority, prefix_mode=mode,
        capacity=capacity, enabled=enabled,
    )


def plan(
    callee: str,
    gateways: Iterable[RoutingGateway],
    current: Mapping[int, int] | None = None,
    total: Mapping[int, int] | None = None,
    unavailable: Iterable[int] = (),
) -> RoutePlan:
    cur = dict(current or {})
    tot = dict(total or {})
    down = set(unavailable)
    return plan_route(callee, gateways, lambda i: cur.get(i, 0), lambda i: tot.get(i, 0),
                      lambda i: i in down)


def ids(result: RoutePlan) -> list[int]:
    return [g.id for g in result.gateways]


# -- match_length ---------------------------------------------------------------------------


def test_match_length() -> None:
    assert match_length(gw(1, ("1", "1555", "44")), "15551234") == 4
    assert match_length(gw(1, ("44",)), "15551234") == -1
    assert match_length(gw(1), "15551234") == 0
    assert match_length(gw(1, ("",)), "15551234") == 0
    assert match_length(gw(1, ("15551234",)), "15551234") == 8
    assert match_length(gw(1, ("155512345",)), "15551234") == -1


# -- ordering -------------------------------------------------------------------------------


def test_longest_prefix_first() -> None:
    gateways = [gw(1, ("1",), mode="continue"), gw(2, ("1555",), mode="continue"),
                gw(3, ("15",), mode="continue"), gw(4, ("2",), mode="continue")]
    result = plan("15551234", gateways)
    assert ids(result) == [2, 3, 1]
    assert result.matched == 3


def test_gateway_match_length_is_its_longest_matching_prefix() -> None:
    gateways = [gw(1, ("1", "15551"), mode="continue"), gw(2, ("155",), mode="continue")]
    assert ids(plan("15551234", gateways)) == [1, 2]


def test_priority_breaks_ties_within_a_length() -> None:
    gateways = [gw(1, ("1",), priority=5), gw(2, ("1",), priority=1), gw(3, ("1",), priority=3)]
    assert ids(plan("123", gateways)) == [2, 3, 1]


def test_priority_does_not_beat_a_longer_prefix() -> None:
    gateways = [gw(1, ("1",), priority=0, mode="continue"),
                gw(2, ("12",), priority=99, mode="continue")]
    assert ids(plan("123", gateways)) == [2, 1]


def test_least_loaded_within_a_priority() -> None:
    gateways = [gw(1, ("1",), capacity=10), gw(2, ("1",), capacity=100),
                gw(3, ("1",), capacity=4)]
    # loads: 5/10 = 0.5, 20/100 = 0.2, 1/4 = 0.25
    result = plan("123", gateways, current={1: 5, 2: 20, 3: 1})
    assert ids(result) == [2, 3, 1]


def test_load_beats_fewer_current_calls() -> None:
    gateways = [gw(1, ("1",), capacity=2), gw(2, ("1",), capacity=1000)]
    assert ids(plan("123", gateways, current={1: 1, 2: 100})) == [2, 1]


def test_no_capacity_counts_as_zero_load() -> None:
    gateways = [gw(1, ("1",), capacity=100), gw(2, ("1",), capacity=None)]
    assert ids(plan("123", gateways, current={1: 1, 2: 500})) == [2, 1]


def test_priority_beats_load() -> None:
    gateways = [gw(1, ("1",), priority=2, capacity=10), gw(2, ("1",), priority=1, capacity=10)]
    assert ids(plan("123", gateways, current={1: 0, 2: 9})) == [2, 1]


def test_fewest_total_calls_then_lowest_id() -> None:
    gateways = [gw(4, ("1",)), gw(2, ("1",)), gw(3, ("1",)), gw(1, ("1",))]
    result = plan("123", gateways, total={4: 10, 2: 30, 3: 10, 1: 20})
    assert ids(result) == [3, 4, 1, 2]
    assert ids(plan("123", gateways)) == [1, 2, 3, 4]


def test_empty_prefixes_match_everything_as_length_zero() -> None:
    gateways = [gw(1, (), mode="continue", priority=0),
                gw(2, ("9",), mode="continue", priority=5)]
    assert ids(plan("98765", gateways)) == [2, 1]
    assert ids(plan("12345", gateways)) == [1]
    assert ids(plan("", gateways)) == [1]


# -- exclusions -------------------------------------------------------------------------------


def test_disabled_gateways_are_skipped() -> None:
    gateways = [gw(1, ("1",), enabled=False), gw(2, ("1",), priority=9)]
    assert ids(plan("123", gateways)) == [2]


def test_disabled_gateway_does_not_end_the_list() -> None:
    # Rule 1: only enabled gateways take part, so a disabled terminate gateway does not stop
    # the route from reaching shorter matches.
    gateways = [gw(1, ("12",), enabled=False, mode="terminate"),
                gw(2, ("12",), mode="continue"), gw(3, ("1",))]
    assert ids(plan("123", gateways)) == [2, 3]


def test_full_gateways_are_skipped() -> None:
    gateways = [gw(1, ("1",), capacity=2), gw(2, ("1",), capacity=3), gw(3, ("1",), capacity=0)]
    assert ids(plan("123", gateways, current={1: 2, 2: 2})) == [2]
    assert ids(plan("123", gateways, current={1: 3, 2: 3})) == []


def test_unavailable_gateways_are_skipped() -> None:
    gateways = [gw(1, ("1",)), gw(2, ("1",)), gw(3, ("1",))]
    assert ids(plan("123", gateways, unavailable=[1, 3])) == [2]


# -- prefix_mode -----------------------------------------------------------------------------


def test_terminate_stops_at_the_longest_group() -> None:
    gateways = [gw(1, ("155",), mode="terminate"), gw(2, ("15",), mode="continue"),
                gw(3, ())]
    result = plan("15551234", gateways)
    assert ids(result) == [1]
    assert result.matched == 1


def test_continue_goes_on_to_shorter_groups() -> None:
    gateways = [gw(1, ("155",), mode="continue"), gw(2, ("15",), mode="continue"),
                gw(3, (), mode="terminate"), gw(4, ("1",), mode="terminate"),
                gw(5, ("1",), mode="continue")]
    result = plan("15551234", gateways)
    # the "1" group has a terminate gateway: the route stops before the empty-prefix one
    assert ids(result) == [1, 2, 4, 5]
    assert result.matched == 4


def test_one_terminate_gateway_in_a_group_ends_the_list() -> None:
    gateways = [gw(1, ("15",), mode="continue"), gw(2, ("15",), mode="terminate", priority=9),
                gw(3, ("1",))]
    assert ids(plan("155", gateways)) == [1, 2]


def test_full_or_unavailable_terminate_gateway_still_ends_the_list() -> None:
    gateways = [gw(1, ("15",), mode="terminate", capacity=1), gw(2, ("15",), mode="continue"),
                gw(3, ("1",))]
    assert ids(plan("155", gateways, current={1: 1})) == [2]
    assert ids(plan("155", gateways, unavailable=[1])) == [2]
    assert ids(plan("155", gateways, unavailable=[1, 2])) == []


def test_unusable_continue_group_falls_through_to_shorter_prefixes() -> None:
    gateways = [gw(1, ("15",), mode="continue", capacity=1), gw(2, ("1",))]
    assert ids(plan("155", gateways, current={1: 1})) == [2]


# -- RoutePlan.matched / reason_if_empty ------------------------------------------------------


def test_no_matching_gateway() -> None:
    result = plan("999", [gw(1, ("1",)), gw(2, ("2",))])
    assert result.gateways == ()
    assert result.matched == 0
    assert result.reason_if_empty == NO_MATCH
    empty = plan("999", [])
    assert empty == RoutePlan((), 0)
    assert empty.reason_if_empty == NO_MATCH


def test_matching_but_unusable_gateways() -> None:
    gateways = [gw(1, ("1",), capacity=1), gw(2, ("1",))]
    result = plan("123", gateways, current={1: 1}, unavailable=[2])
    assert result.gateways == ()
    assert result.matched == 2
    assert result.reason_if_empty == ALL_UNUSABLE


def test_matched_counts_only_the_groups_the_route_reached() -> None:
    gateways = [gw(1, ("12",), mode="terminate", capacity=0), gw(2, ("1",)), gw(3, ())]
    result = plan("123", gateways)
    assert result.gateways == ()
    assert result.matched == 1
    assert result.reason_if_empty == ALL_UNUSABLE


def test_only_disabled_gateways_match() -> None:
    """docs/calls.md: "matching gateways that are all disabled or full -> 503"; ``matched``
    counts "gateways whose prefix matched, usable or not". A callee whose only matching
    gateway is disabled has a match (503, "disabled, full or unavailable"), not "no routing
    gateway matches the callee" (404)."""
    result = plan("123", [gw(1, ("1",), enabled=False), gw(2, ("2",))])
    assert result.gateways == ()
    assert result.matched == 1
    assert result.reason_if_empty == ALL_UNUSABLE


# -- property ---------------------------------------------------------------------------------

PREFIXES = st.lists(st.text(alphabet="0123", min_size=1, max_size=3), max_size=3)


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[str, list[RoutingGateway], dict[int, int], dict[int, int], set[int]]:
    count = draw(st.integers(0, 8))
    gids = draw(st.lists(st.integers(1, 1000), min_size=count, max_size=count, unique=True))
    gateways = [
        gw(
            gid,
            tuple(draw(PREFIXES)),
            priority=draw(st.integers(0, 3)),
            mode=draw(st.sampled_from(["terminate", "continue"])),
            capacity=draw(st.none() | st.integers(0, 5)),
            enabled=draw(st.booleans()),
        )
        for gid in gids
    ]
    current = {gid: draw(st.integers(0, 6)) for gid in gids}
    total = {gid: draw(st.integers(0, 50)) for gid in gids}
    down = draw(st.sets(st.sampled_from(gids))) if gids else set()
    callee = draw(st.text(alphabet="0123", max_size=5))
    return callee, gateways, current, total, down


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_plan_never_returns_unusable_gateways_and_orders_by_match_length(
    scenario: tuple[str, list[RoutingGateway], dict[int, int], dict[int, int], set[int]],
) -> None:
    callee, gateways, current, total, down = scenario
    result = plan(callee, gateways, current, total, down)
    chosen = result.gateways
    for g in chosen:
        assert g.enabled
        assert g.capacity is None or current[g.id] < g.capacity
        assert g.id not in down
        assert match_length(g, callee) >= 0
    lengths = [match_length(g, callee) for g in chosen]
    assert lengths == sorted(lengths, reverse=True)
    assert len({g.id for g in chosen}) == len(chosen)
    assert result.matched >= len(chosen)
    # the longest enabled match always heads the list when it has a usable gateway
    usable = [g for g in gateways if g.enabled and match_length(g, callee) >= 0
              and (g.capacity is None or current[g.id] < g.capacity) and g.id not in down]
    enabled = [g for g in gateways if g.enabled and match_length(g, callee) >= 0]
    if enabled:
        longest = max(match_length(g, callee) for g in enabled)
        if any(match_length(g, callee) == longest for g in usable):
            assert lengths[0] == longest
    else:
        assert chosen == ()
