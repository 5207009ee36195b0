"""Weighted routing: among the routing gateways of one match length and one priority,
calls are split by ``weight`` with a smooth weighted round robin (nginx's: each turn
every gateway gains its weight, the one ahead is chosen and gives back the sum). Over
any run of calls the split is exact to within one call per gateway, and interleaved
(70/30 goes A A B A A B A B A A..., not 70 A then 30 B). The chosen gateway goes first;
the others stay behind it in rule 2's order, so a failure still falls over to them.

The turns are this signalling worker's; with several workers (or nodes) each splits its
own calls exactly, so the sum is exact to within one call per gateway and worker."""

from __future__ import annotations

from collections.abc import Sequence

from b2bua.routing.gateways import RoutingGateway

MAX_GROUPS = 10_000  # distinct groups remembered; beyond it the turns start again


class WeightedTurns:
    def __init__(self) -> None:
        self._current: dict[tuple[int, ...], dict[int, int]] = {}

    def reset(self) -> None:
        """Forget every turn (the gateways were reloaded)."""
        self._current.clear()

    def choose(self, group: Sequence[RoutingGateway], usable: Sequence[RoutingGateway],
               advance: bool = True) -> RoutingGateway | None:
        """The gateway of ``usable`` (a subset of ``group``, the gateways sharing a match
        length and a priority) whose turn it is; None when no usable one has a weight
        above 0. ``advance=False`` only looks (the routing dry run)."""
        weighted = [gw for gw in usable if gw.weight]
        if not weighted:
            return None
        key = tuple(gw.id for gw in group)
        current = self._current.get(key)
        if current is None:
            if len(self._current) >= MAX_GROUPS:
                self._current.clear()
            current = {}
            if advance:
                self._current[key] = current
        total = 0
        best: RoutingGateway | None = None
        best_value = 0
        for gw in weighted:
            weight = gw.weight or 0
            value = current.get(gw.id, 0) + weight
            total += weight
            if best is None or value > best_value:
                best, best_value = gw, value
        assert best is not None
        if advance:
            for gw in weighted:
                current[gw.id] = current.get(gw.id, 0) + (gw.weight or 0)
            current[best.id] -= total
        return best


def weighted(group: Sequence[RoutingGateway]) -> bool:
    """Whether a tie group is split by weight: any of its gateways has one."""
    for gw in group:  # noqa: SIM110 (no generator: this runs for every call)
        if gw.weight is not None:
            return True
    return False
