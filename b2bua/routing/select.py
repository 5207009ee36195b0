"""VOS3000's routing order, as a pure function of the callee and the gateways' state.

1. Only enabled gateways with a prefix matching the callee (no prefixes = matches
   every callee, as a zero-length prefix). A gateway's match length is its longest
   matching prefix.
2. Longest match first. Within the same length: lowest ``priority`` number, then the
   least loaded (current calls / capacity; no capacity counts as 0), then the fewest
   calls so far, then the lowest id.
3. ``prefix_mode``: after the gateways of one match length, the route goes on to
   shorter matches only when every gateway of that length is ``continue``; one
   ``terminate`` gateway ends the list there.
4. Gateways at capacity or taken out of routing (e.g. by a vendor's Retry-After) are
   left out; they still count for rule 3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from b2bua.routing.gateways import RoutingGateway


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """The gateways to try in order, and why the list may be empty."""

    gateways: tuple[RoutingGateway, ...]
    matched: int  # gateways whose prefix matched, usable or not

    @property
    def reason_if_empty(self) -> str:
        return "no routing gateway matches the callee" if self.matched == 0 else (
            "every matching routing gateway is disabled, full or unavailable"
        )


def match_length(gateway: RoutingGateway, callee: str) -> int:
    """Length of the longest prefix of ``gateway`` matching ``callee``; -1 when none."""
    if not gateway.prefixes:
        return 0
    best = -1
    for prefix in gateway.prefixes:
        if callee.startswith(prefix) and len(prefix) > best:
            best = len(prefix)
    return best


def plan_route(
    callee: str,
    gateways: Iterable[RoutingGateway],
    current_calls: Callable[[int], int],
    total_calls: Callable[[int], int],
    unavailable: Callable[[int], bool] = lambda _id: False,
) -> RoutePlan:
    groups: dict[int, list[RoutingGateway]] = {}
    disabled_matches = 0
    for gw in gateways:
        length = match_length(gw, callee)
        if length < 0:
            continue
        if not gw.enabled:
            # Counted as a match (the callee is routable, just not now) but not ordered:
            # a disabled gateway has no say in the prefix_mode rule.
            disabled_matches += 1
            continue
        groups.setdefault(length, []).append(gw)

    def load(gw: RoutingGateway) -> float:
        return current_calls(gw.id) / gw.capacity if gw.capacity else 0.0

    ordered: list[RoutingGateway] = []
    matched = 0
    for length in sorted(groups, reverse=True):
        group = groups[length]
        matched += len(group)
        group.sort(key=lambda gw: (gw.priority, load(gw), total_calls(gw.id), gw.id))
        for gw in group:
            full = gw.capacity is not None and current_calls(gw.id) >= gw.capacity
            if not full and not unavailable(gw.id):
                ordered.append(gw)
        if any(gw.prefix_mode != "continue" for gw in group):
            break
    return RoutePlan(tuple(ordered), matched + disabled_matches)
