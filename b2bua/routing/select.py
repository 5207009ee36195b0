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
5. Weights (``routing/weights.py``): among the usable gateways of one match length and
   one priority, when any of them has a ``weight``, the one whose weighted turn it is
   goes first; the others follow in rule 2's order.

The gateways come in as their periods in force make them (``routing/periods.py``).

``plan_route`` is what a call uses; ``explain_route`` takes the same steps (the helpers
below, one per rule) and also says, for every gateway, why it is in the route or out,
for the routing dry run (``POST /api/v1/routing/test``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from b2bua.routing.gateways import RoutingGateway
from b2bua.routing.weights import WeightedTurns, weighted

Count = Callable[[int], int]

# Why a gateway is in the route or out of it (GatewayVerdict.reason).
IN_ROUTE = "route"
NO_PREFIX_MATCH = "no_prefix_match"
DISABLED = "disabled"
FULL = "full"
RETRY_AFTER = "retry_after"
CUT_BY_TERMINATE = "cut_by_terminate"
ROUTE_REASONS = (IN_ROUTE, NO_PREFIX_MATCH, DISABLED, FULL, RETRY_AFTER, CUT_BY_TERMINATE)


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


@dataclass(frozen=True, slots=True)
class GatewayVerdict:
    """One gateway as ``explain_route`` saw it."""

    gateway: RoutingGateway
    reason: str  # one of ROUTE_REASONS
    prefix: str | None  # its longest prefix matching the callee ("": it has none); None: no match
    position: int | None  # 1-based place in the route; None: left out
    rank: int | None  # place in rule 2's order among the enabled matching gateways
    order_by: str | None  # what put it after the gateway ranked just before it
    order: str  # its place in rule 2's order in words ("" when not ranked)
    detail: str  # the reason in words
    current_calls: int
    total_calls: int
    load: float
    held_until: float | None  # a Retry-After hold still running
    weighted_turn: bool = False  # put first by rule 5 (its weighted turn)


@dataclass(frozen=True, slots=True)
class RouteExplanation:
    plan: RoutePlan  # what plan_route gives for the same state
    verdicts: tuple[GatewayVerdict, ...]  # every gateway: ranked ones in rank order first


def match_length(gateway: RoutingGateway, callee: str) -> int:
    """Length of the longest prefix of ``gateway`` matching ``callee``; -1 when none."""
    if not gateway.prefixes:
        return 0
    best = -1
    for prefix in gateway.prefixes:
        if callee.startswith(prefix) and len(prefix) > best:
            best = len(prefix)
    return best


def _matching(callee: str, gateways: Iterable[RoutingGateway]
              ) -> tuple[dict[int, list[RoutingGateway]], int]:
    """Rule 1: the enabled matching gateways by match length, and how many disabled ones
    match (counted as matches: the callee is routable, just not now; but a disabled
    gateway has no say in rule 3)."""
    groups: dict[int, list[RoutingGateway]] = {}
    disabled_matches = 0
    for gw in gateways:
        length = match_length(gw, callee)
        if length < 0:
            continue
        if not gw.enabled:
            disabled_matches += 1
            continue
        groups.setdefault(length, []).append(gw)
    return groups, disabled_matches


def _load(gw: RoutingGateway, current_calls: Count) -> float:
    return current_calls(gw.id) / gw.capacity if gw.capacity else 0.0


def _rank(group: list[RoutingGateway], current_calls: Count, total_calls: Count) -> None:
    """Rule 2 within one match length, in place."""
    group.sort(key=lambda gw: (gw.priority, _load(gw, current_calls), total_calls(gw.id),
                               gw.id))


def _full(gw: RoutingGateway, current_calls: Count) -> bool:
    return gw.capacity is not None and current_calls(gw.id) >= gw.capacity


def _ends_route(group: list[RoutingGateway]) -> bool:
    """Rule 3: one gateway that is not ``continue`` ends the route after its length."""
    return any(gw.prefix_mode != "continue" for gw in group)


def _weigh(group: list[RoutingGateway], usable: list[RoutingGateway],
           turns: WeightedTurns | None, advance: bool,
           picks: set[int] | None = None) -> list[RoutingGateway]:
    """Rule 5: ``usable`` (in rule 2's order) with, in each run of one priority that is
    weighted, the gateway whose turn it is first (its id added to ``picks``)."""
    if turns is None or not weighted(group):
        return usable
    if group[0].priority == group[-1].priority:  # one run (the usual case)
        pick = turns.choose(group, usable, advance)
        if pick is None:
            return usable
        if picks is not None:
            picks.add(pick.id)
        return [pick] + [gw for gw in usable if gw is not pick]
    out: list[RoutingGateway] = []
    start = 0
    while start < len(group):
        priority = group[start].priority
        end = start
        while end < len(group) and group[end].priority == priority:
            end += 1
        run = group[start:end]
        ids = {gw.id for gw in run}
        members = [gw for gw in usable if gw.id in ids]
        pick = turns.choose(run, members, advance) if weighted(run) else None
        if pick is not None:
            if picks is not None:
                picks.add(pick.id)
            members.remove(pick)
            members.insert(0, pick)
        out.extend(members)
        start = end
    return out


def plan_route(
    callee: str,
    gateways: Iterable[RoutingGateway],
    current_calls: Count,
    total_calls: Count,
    unavailable: Callable[[int], bool] = lambda _id: False,
    turns: WeightedTurns | None = None,
) -> RoutePlan:
    """The route of one call; with ``turns``, weighted groups take their next turn."""
    groups, disabled_matches = _matching(callee, gateways)
    ordered: list[RoutingGateway] = []
    matched = 0
    for length in sorted(groups, reverse=True):
        group = groups[length]
        matched += len(group)
        _rank(group, current_calls, total_calls)
        usable = [gw for gw in group
                  if not _full(gw, current_calls) and not unavailable(gw.id)]  # rule 4
        ordered.extend(_weigh(group, usable, turns, advance=True))
        if _ends_route(group):
            break
    return RoutePlan(tuple(ordered), matched + disabled_matches)


def matching_prefix(gateway: RoutingGateway, callee: str) -> str | None:
    """The prefix ``match_length`` measures: "" for a gateway without prefixes."""
    if not gateway.prefixes:
        return ""
    best: str | None = None
    for prefix in gateway.prefixes:
        if callee.startswith(prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return best


def explain_route(
    callee: str,
    gateways: Iterable[RoutingGateway],
    current_calls: Count,
    total_calls: Count,
    held_until: Callable[[int], float],
    now: float,
    turns: WeightedTurns | None = None,
) -> RouteExplanation:
    """``plan_route`` with every gateway's verdict. The counts are read once, so the plan
    and the reasons describe one state; ``held_until`` is a Retry-After's deadline (0:
    none), the gateway being unavailable while it is after ``now``."""
    everyone = list(gateways)
    current = {gw.id: current_calls(gw.id) for gw in everyone}
    total = {gw.id: total_calls(gw.id) for gw in everyone}
    held = {gw.id: held_until(gw.id) for gw in everyone}
    current_of, total_of = current.__getitem__, total.__getitem__

    def verdict(gw: RoutingGateway, reason: str, detail: str, *, position: int | None = None,
                rank: int | None = None, order: tuple[str | None, str] = (None, "")
                ) -> GatewayVerdict:
        until = held[gw.id]
        return GatewayVerdict(gw, reason, matching_prefix(gw, callee), position, rank,
                              order[0], order[1], detail, current[gw.id], total[gw.id],
                              _load(gw, current_of), until if until > now else None)

    groups, disabled_matches = _matching(callee, everyone)
    verdicts: list[GatewayVerdict] = []
    ordered: list[RoutingGateway] = []
    matched = 0
    ended_by: list[RoutingGateway] = []
    previous: RoutingGateway | None = None
    for length in sorted(groups, reverse=True):
        group = groups[length]
        _rank(group, current_of, total_of)
        if ended_by:
            names = ", ".join(f'"{gw.name}"' for gw in ended_by)
            for gw in group:
                verdicts.append(verdict(gw, CUT_BY_TERMINATE, (
                    f"prefix_mode terminate of {names} (a longer prefix matched) ends the "
                    "route before this gateway")))
            continue
        usable: list[RoutingGateway] = []
        first_verdict = len(verdicts)
        for rank, gw in enumerate(group, start=matched + 1):
            order = _after(previous, gw, callee, current_of, total_of)
            previous = gw
            if _full(gw, current_of):  # rule 4, as plan_route asks it
                detail = f"at capacity: {current[gw.id]} of {gw.capacity} calls"
                verdicts.append(verdict(gw, FULL, detail, rank=rank, order=order))
            elif held[gw.id] > now:
                detail = (f"held out of routing by the vendor's Retry-After for "
                          f"{held[gw.id] - now:.0f} s more")
                verdicts.append(verdict(gw, RETRY_AFTER, detail, rank=rank, order=order))
            else:
                usable.append(gw)
                verdicts.append(verdict(gw, IN_ROUTE, "", rank=rank, order=order))
        # Rule 5 may put a weighted gateway ahead: the places follow the final order.
        turn: set[int] = set()
        weighed = _weigh(group, usable, turns, advance=False, picks=turn)
        places = {gw.id: len(ordered) + i for i, gw in enumerate(weighed, start=1)}
        for i in range(first_verdict, len(verdicts)):
            v = verdicts[i]
            if v.reason == IN_ROUTE:
                place = places[v.gateway.id]
                why = f" (its weighted turn, weight {v.gateway.weight})" \
                    if v.gateway.id in turn else ""
                verdicts[i] = dataclasses.replace(
                    v, position=place, detail=f"in the route, place {place}{why}",
                    weighted_turn=v.gateway.id in turn)
        ordered.extend(weighed)
        matched += len(group)
        if _ends_route(group):
            ended_by = [gw for gw in group if gw.prefix_mode != "continue"]
    for gw in everyone:
        if not gw.enabled and match_length(gw, callee) >= 0:
            verdicts.append(verdict(gw, DISABLED, "disabled"))
    for gw in everyone:
        if match_length(gw, callee) < 0:
            listed = ", ".join(f'"{p}"' for p in gw.prefixes)
            also = "" if gw.enabled else " (and it is disabled)"
            verdicts.append(verdict(gw, NO_PREFIX_MATCH,
                                    f"none of its prefixes ({listed}) starts the callee{also}"))
    return RouteExplanation(RoutePlan(tuple(ordered), matched + disabled_matches),
                            tuple(verdicts))


def _after(previous: RoutingGateway | None, gw: RoutingGateway, callee: str,
           current_calls: Count, total_calls: Count) -> tuple[str | None, str]:
    """Which of rule 2's keys puts ``gw`` after ``previous`` (the gateway ranked just
    before it), and that in words."""
    prefix = matching_prefix(gw, callee)
    if previous is None:
        return None, (f'first: its prefix "{prefix}" is the longest match' if prefix
                      else "first: it has no prefixes and matches every callee")
    before = f'after "{previous.name}"'
    theirs = matching_prefix(previous, callee) or ""
    if len(prefix or "") != len(theirs):
        mine = f'its prefix "{prefix}"' if prefix else "it has no prefixes, so its match"
        return "prefix", f'{before}: {mine} is shorter than "{theirs}"'
    if gw.priority != previous.priority:
        return "priority", (f"{before}: priority {gw.priority} comes after "
                            f"{previous.priority}")
    load, their_load = _load(gw, current_calls), _load(previous, current_calls)
    if load != their_load:
        return "load", f"{before}: more loaded ({load:.2f} against {their_load:.2f})"
    calls, their_calls = total_calls(gw.id), total_calls(previous.id)
    if calls != their_calls:
        return "total_calls", f"{before}: more calls so far ({calls} against {their_calls})"
    return "id", f"{before}: equal on prefix, priority, load and calls so far; higher id"
