"""The asyncio side of vendor resolution: dnspython queries feeding ``routing.dns``.

Calls ask :meth:`VendorResolver.plan` (cache only, no wait); a cold cache is filled by
:meth:`VendorResolver.resolve` before the INVITE goes out. :meth:`VendorResolver.run`
keeps every DNS-named gateway's answers fresh in the background and reports each
gateway's addresses, so requests from them are recognised as that vendor.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdata
import dns.resolver
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.NAPTR import NAPTR
from dns.rdtypes.IN.SRV import SRV

from b2bua.routing.dns import (
    DEFAULT_PORT,
    DnsCache,
    Naptr,
    Plan,
    Query,
    Record,
    Srv,
    ip_plan,
    is_ip,
    plan_targets,
)
from b2bua.routing.gateways import RoutingGateway

log = logging.getLogger("b2bua.dns")

QUERY_LIFETIME = 3.0  # one query, retries included: what a cold call may wait for DNS
REFRESH_INTERVAL = 0.5
MAX_ROUNDS = 4  # NAPTR, SRV, A: a chain is never longer than this

AddressesHook = Callable[[int, str, frozenset[str]], None]


@dataclass
class DnsStats:
    queries: int = 0
    answers: int = 0
    negative: int = 0
    failures: int = 0
    stale_served: int = 0


class VendorResolver:
    def __init__(self, server: tuple[str, int] | None = None,
                 families: tuple[str, ...] = ("A",),
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        """``server``: the DNS server (host, port); None reads the system's resolv.conf."""
        self.server = server
        self.families = families
        self.clock = clock
        self.rng = rng or random.Random()
        self.cache = DnsCache()
        self.stats = DnsStats()
        # Told each DNS-named gateway's addresses (id, host, addresses) when they change.
        self.on_addresses: AddressesHook = lambda _id, _host, _addresses: None
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._setup_error = ""
        self._inflight: dict[Query, asyncio.Future[None]] = {}
        self._reported: dict[int, tuple[str, frozenset[str]]] = {}

    def _dns(self) -> dns.asyncresolver.Resolver | None:
        """Built on first use: an engine without DNS-named gateways never reads
        resolv.conf."""
        if self._resolver is None and not self._setup_error:
            try:
                resolver = dns.asyncresolver.Resolver(configure=self.server is None)
            except dns.resolver.NoResolverConfiguration as exc:
                self._setup_error = f"no DNS server configured ({exc})"
                return None
            if self.server is not None:
                resolver.nameservers = [self.server[0]]
                resolver.port = self.server[1]
            resolver.lifetime = QUERY_LIFETIME
            resolver.cache = None  # ours keeps stale answers; dnspython's would not
            self._resolver = resolver
        return self._resolver

    # -- for calls -------------------------------------------------------------------------

    def plan(self, gw: RoutingGateway) -> Plan:
        """The gateway's targets as the cache has them now (a call's warm path)."""
        if is_ip(gw.host):  # most vendors: no cache, no clock
            return ip_plan(gw.host, gw.port or DEFAULT_PORT)
        plan = self._plan(gw)
        if plan.stale and plan.complete:
            self.stats.stale_served += 1
        return plan

    def peek(self, gw: RoutingGateway) -> Plan:
        """``plan`` for a look (the routing dry run): not counted as served."""
        if is_ip(gw.host):
            return ip_plan(gw.host, gw.port or DEFAULT_PORT)
        return self._plan(gw)

    def _plan(self, gw: RoutingGateway) -> Plan:
        return plan_targets(gw.host, gw.port, gw.transport, self.cache, self.clock(),
                            self.rng, self.families)

    async def resolve(self, gw: RoutingGateway) -> Plan:
        """The gateway's plan, sending whatever queries the cache lacks (never raises)."""
        plan = await self.resolve_host(gw.host, gw.port, gw.transport)
        if plan.complete:
            self._report(gw, plan)
        return plan

    async def resolve_host(self, host: str, port: int | None, transport: str) -> Plan:
        """The targets of ``host`` (a registrar, a gateway) by RFC 3263, from the cache
        and whatever queries it lacks (never raises)."""

        def plan_now() -> Plan:
            return plan_targets(host, port, transport, self.cache, self.clock(), self.rng,
                                self.families)

        plan = plan_now()
        for _ in range(MAX_ROUNDS):
            if plan.complete:
                break
            await asyncio.gather(*(self._query(q) for q in plan.missing))
            plan = plan_now()
        if not plan.complete:  # a longer chain than RFC 3263 allows (CNAME loops aside)
            return Plan(failure=f"no address for {host} (resolution too long)")
        if plan.stale:
            self.stats.stale_served += 1
        return plan

    def snapshot(self) -> dict[str, object]:
        return {**asdict(self.stats), "cached": len(self.cache.entries)}

    # -- background ------------------------------------------------------------------------

    async def run(self, gateways: Callable[[], Iterable[RoutingGateway]]) -> None:
        """Keep every DNS-named gateway's answers fresh, before they expire."""
        while True:
            try:
                await self.refresh(gateways())
            except Exception:  # the loop must outlive any surprise in one round
                log.exception("DNS refresh failed")
            await asyncio.sleep(REFRESH_INTERVAL)

    async def refresh(self, gateways: Iterable[RoutingGateway]) -> None:
        named = [gw for gw in gateways if gw.enabled and not is_ip(gw.host)]
        # All at once: one vendor's unreachable DNS must not hold up the others'.
        plans = await asyncio.gather(*(self._refresh(gw) for gw in named))
        self.cache.prune({q for plan in plans for q in plan.queries})
        live = {gw.id for gw in named}
        for gw_id in [i for i in self._reported if i not in live]:
            host = self._reported.pop(gw_id)[0]
            self.on_addresses(gw_id, host, frozenset())

    async def _refresh(self, gw: RoutingGateway) -> Plan:
        plan = self._plan(gw)
        now = self.clock()
        due = [q for q in (*plan.queries, *plan.missing) if self.cache.due(q, now)]
        if not due:
            self._report(gw, plan)
            return plan
        await asyncio.gather(*(self._query(q) for q in dict.fromkeys(due)))
        return await self.resolve(gw)

    def _report(self, gw: RoutingGateway, plan: Plan) -> None:
        if not plan.complete or is_ip(gw.host):
            return
        addresses = frozenset(t.address for t in plan.targets)
        if not addresses and gw.id in self._reported:
            return  # keep recognising the last known addresses
        if self._reported.get(gw.id) != (gw.host, addresses):
            self._reported[gw.id] = (gw.host, addresses)
            log.info("routing gateway %s: %s is at %s", gw.name, gw.host,
                     ", ".join(str(t) for t in plan.targets) or "no address")
            self.on_addresses(gw.id, gw.host, addresses)

    # -- one query -------------------------------------------------------------------------

    def _query(self, query: Query) -> asyncio.Future[None]:
        """One query, shared by everyone who needs it meanwhile (registered at once, not
        when a task gets to run); the answer goes to the cache."""
        pending = self._inflight.get(query)
        if pending is None:
            pending = asyncio.ensure_future(self._send(query))
            self._inflight[query] = pending
            pending.add_done_callback(lambda _done: self._inflight.pop(query, None))
        return asyncio.shield(pending)

    async def _send(self, query: Query) -> None:
        name, rdtype = query
        self.stats.queries += 1
        resolver = self._dns()
        if resolver is None:
            self.stats.failures += 1
            self.cache.fail(query, self._setup_error, self.clock())
            return
        try:
            answer = await resolver.resolve(dns.name.from_text(name), rdtype,
                                            raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            self.stats.negative += 1
            self.cache.store(query, (), 0.0, self.clock(), "no such name")
            return
        except dns.exception.Timeout:
            self._failed(query, "DNS timeout")
            return
        except dns.resolver.NoNameservers as exc:
            self._failed(query, f"DNS server failure ({exc.msg})")
            return
        except (dns.exception.DNSException, OSError) as exc:
            self._failed(query, f"DNS error ({exc})")
            return
        except Exception as exc:  # a call must get its failure, never an exception
            log.exception("DNS %s %s", rdtype, name)
            self._failed(query, f"resolver error ({exc})")
            return
        rrset = answer.rrset
        if rrset is None:
            self.stats.negative += 1
            ttl = max(0.0, answer.expiration - time.time())
            self.cache.store(query, (), ttl, self.clock(), "no records")
            return
        self.stats.answers += 1
        self.cache.store(query, tuple(_record(rdtype, rd) for rd in rrset), float(rrset.ttl),
                         self.clock())

    def _failed(self, query: Query, reason: str) -> None:
        self.stats.failures += 1
        entry = self.cache.entries.get(query)
        if entry is not None and entry.answered:
            log.warning("DNS %s %s: %s; keeping the last answer", query[1], query[0], reason)
        self.cache.fail(query, reason, self.clock())


def _record(rdtype: str, rd: dns.rdata.Rdata) -> Record:
    if isinstance(rd, SRV):
        return Srv(rd.priority, rd.weight, rd.port, str(rd.target))
    if isinstance(rd, NAPTR):
        return Naptr(rd.order, rd.preference, rd.flags.decode(), rd.service.decode(),
                     str(rd.replacement))
    if isinstance(rd, A | AAAA):
        return str(rd.address)
    raise ValueError(f"unexpected {rdtype} record {rd}")
