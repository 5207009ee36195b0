"""The resolver's asyncio side with the DNS replaced by a table: cold resolution, the
background refresh, addresses reported for vendor recognition, and shared queries."""

from __future__ import annotations

import asyncio
import random

from b2bua.routing.dns import Query, Record, Srv
from b2bua.routing.gateways import RoutingGateway
from b2bua.routing.resolver import VendorResolver


class TableResolver(VendorResolver):
    def __init__(self, zone: dict[Query, tuple[Record, ...]]) -> None:
        self.now = 0.0
        super().__init__(clock=lambda: self.now, rng=random.Random(1))
        self.zone = zone
        self.sent: list[Query] = []
        self.down = False

    async def _send(self, query: Query) -> None:
        self.sent.append(query)
        await asyncio.sleep(0)
        if self.down:
            self._failed(query, "DNS timeout")
        else:
            self.cache.store(query, self.zone.get(query, ()), 10, self.now, "no such name")


def gateway(host: str = "vendor.test", gw_id: int = 1) -> RoutingGateway:
    return RoutingGateway(gw_id, f"g{gw_id}", host, None, "udp", (), 0, "terminate", None, True)


ZONE: dict[Query, tuple[Record, ...]] = {
    ("_sip._udp.vendor.test", "SRV"): (Srv(10, 0, 5070, "a.vendor.test."),
                                       Srv(20, 0, 5071, "b.vendor.test.")),
    ("a.vendor.test", "A"): ("192.0.2.1",),
    ("b.vendor.test", "A"): ("192.0.2.2",),
}


def test_cold_resolution_then_warm_plan_without_queries() -> None:
    resolver = TableResolver(ZONE)
    reported: list[tuple[int, str, frozenset[str]]] = []
    resolver.on_addresses = lambda *args: reported.append(args)
    assert not resolver.plan(gateway()).complete
    plan = asyncio.run(resolver.resolve(gateway()))
    assert [str(t) for t in plan.targets] == ["192.0.2.1:5070", "192.0.2.2:5071"]
    assert len(resolver.sent) == 4  # NAPTR, SRV, then both targets' A at once
    assert reported == [(1, "vendor.test", frozenset({"192.0.2.1", "192.0.2.2"}))]
    resolver.sent.clear()
    assert resolver.plan(gateway()).complete and resolver.sent == []


def test_concurrent_calls_share_one_query() -> None:
    resolver = TableResolver(ZONE)

    async def both() -> None:
        await asyncio.gather(resolver.resolve(gateway()), resolver.resolve(gateway()))

    asyncio.run(both())
    assert len(resolver.sent) == len(set(resolver.sent)) == 4


def test_refresh_before_expiry_and_stale_while_down() -> None:
    resolver = TableResolver(ZONE)
    asyncio.run(resolver.refresh([gateway()]))
    resolver.sent.clear()
    resolver.now = 7.9
    asyncio.run(resolver.refresh([gateway()]))
    assert resolver.sent == []  # 80 % of the 10 s TTL not gone yet
    resolver.now = 8.0
    asyncio.run(resolver.refresh([gateway()]))
    assert len(resolver.sent) == 4
    resolver.down = True
    resolver.now = 16.5
    asyncio.run(resolver.refresh([gateway()]))
    resolver.now = 30.0
    plan = resolver.plan(gateway())
    assert plan.stale and [t.address for t in plan.targets] == ["192.0.2.1", "192.0.2.2"]
    assert resolver.snapshot()["stale_served"] == 1
    assert resolver.stats.failures == 4


def test_removed_gateway_forgets_its_answers_and_addresses() -> None:
    resolver = TableResolver(ZONE)
    reported: list[tuple[int, str, frozenset[str]]] = []
    resolver.on_addresses = lambda *args: reported.append(args)
    asyncio.run(resolver.refresh([gateway(), gateway("192.0.2.9", 2)]))
    asyncio.run(resolver.refresh([]))
    assert resolver.cache.entries == {}
    assert reported[-1] == (1, "vendor.test", frozenset())
