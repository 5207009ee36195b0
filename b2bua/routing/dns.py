"""Where a routing gateway's requests go (RFC 3263), as pure decisions over a DNS cache.

No sockets and no clock here: the adapter (``b2bua.routing.resolver``) asks
:func:`plan_targets` what it needs, sends those queries, feeds the answers to
:class:`DnsCache` with ``now``, and asks again. Rules:

* an IP host is its own target (the gateway's port, else 5060); no DNS at all;
* a name with a port: its A (or AAAA) records, at that port (RFC 3263 4.2);
* a name without a port: NAPTR for the gateway's transport (``SIP+D2U``, ``SIP+D2T``),
  else SRV ``_sip._udp``/``_sip._tcp``; SRV targets in priority and weight order
  (RFC 2782), each at its own port; with no SRV records, the name's A records at 5060.

The cache keeps each answer for its TTL; the adapter refreshes it once most of the TTL
is gone. Past its TTL, an answer is still served (up to ``STALE_LIMIT``) until a new one
comes, as RFC 8767 serves stale data: a call never waits for a refresh, and while the
DNS cannot be reached a vendor on its last known address is better than no vendor. An
answer saying the name or record no longer exists replaces it.
"""

from __future__ import annotations

import functools
import ipaddress
import random
import re
from dataclasses import dataclass, field

Query = tuple[str, str]  # (name, "NAPTR" | "SRV" | "A" | "AAAA")

DEFAULT_PORT = 5060
MIN_TTL = 1.0
NEGATIVE_TTL = 60.0  # at most this long for "no such record", so new records show soon
REFRESH_FRACTION = 0.8  # refresh once this much of the TTL is gone
RETRY_DELAY = 5.0  # after a failed query, before the next one for the same record
STALE_LIMIT = 86400.0  # how long past its TTL an answer is served while the DNS is down

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_NAPTR_SERVICE = {"udp": "SIP+D2U", "tcp": "SIP+D2T"}


@functools.lru_cache(maxsize=4096)
def is_ip(host: str) -> bool:
    """Asked for every call attempt and every gateway on each refresh round: cached, as
    parsing an address costs a few microseconds and gateway hosts are few."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_hostname(host: str) -> bool:
    """A DNS name (RFC 1123 labels), not an IP address. A numeric last label is refused:
    ``10.0.0`` is a mistyped address, not a name."""
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > 253 or is_ip(name):
        return False
    labels = name.split(".")
    return all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class Naptr:
    order: int
    preference: int
    flags: str
    service: str
    replacement: str


Record = Srv | Naptr | str  # str: an address from A or AAAA


@dataclass(slots=True)
class Entry:
    """The cached answer to one query."""

    records: tuple[Record, ...]
    fetched_at: float
    expires_at: float
    reason: str = ""  # why there are no records: "no such name", "no records", "timeout"...
    answered: bool = True  # the DNS said this (records, or that there are none)
    unreachable: bool = False  # the last query got no answer at all (``reason`` says how)
    retry_at: float = 0.0  # no new query before this (after a failure)

    @property
    def refresh_at(self) -> float:
        return self.fetched_at + (self.expires_at - self.fetched_at) * REFRESH_FRACTION


@dataclass
class DnsCache:
    entries: dict[Query, Entry] = field(default_factory=dict)

    def answer(self, query: Query, now: float) -> Entry | None:
        """The answer to use now: fresh, or the last one the DNS gave while a new one is
        awaited; None when the query must be sent first."""
        entry = self.entries.get(query)
        if entry is None:
            return None
        if now < entry.expires_at:
            return entry
        # "No NAPTR records" is as good an answer to keep as an address: the chain to
        # the vendor is served stale as a whole.
        if entry.answered and now < entry.expires_at + STALE_LIMIT:
            return entry
        return None

    def due(self, query: Query, now: float) -> bool:
        """Whether to send the query now: unknown, or most of its TTL gone, and not
        within the pause after a failure."""
        entry = self.entries.get(query)
        if entry is None:
            return True
        return now >= entry.retry_at and now >= entry.refresh_at

    def store(self, query: Query, records: tuple[Record, ...], ttl: float, now: float,
              reason: str = "") -> None:
        """An answer from the DNS (``records`` empty: the name or record does not exist)."""
        ttl = max(MIN_TTL, min(ttl, NEGATIVE_TTL) if not records else ttl)
        self.entries[query] = Entry(records, now, now + ttl,
                                    reason=reason if not records else "")

    def fail(self, query: Query, reason: str, now: float) -> None:
        """No answer (timeout, no server, SERVFAIL): keep the last answer."""
        entry = self.entries.get(query)
        if entry is not None and entry.answered:
            entry.unreachable = True
            entry.retry_at = now + RETRY_DELAY
            return
        # Nothing to fall back on: calls in the next seconds fail at once instead of
        # each waiting out the resolver's timeout.
        self.entries[query] = Entry((), now, now + RETRY_DELAY, reason=reason, answered=False,
                                    unreachable=True, retry_at=now + RETRY_DELAY)

    def prune(self, keep: set[Query]) -> None:
        """Forget answers no gateway needs any more (removed or renamed gateways)."""
        for query in [q for q in self.entries if q not in keep]:
            del self.entries[query]


def order_srv(records: list[Srv] | tuple[Srv, ...], rng: random.Random) -> list[Srv]:
    """RFC 2782: lowest priority first; within a priority, a weighted random order (zero
    weights first in the running sum, so they get a small chance only)."""
    ordered: list[Srv] = []
    for priority in sorted({r.priority for r in records}):
        group = sorted((r for r in records if r.priority == priority),
                       key=lambda r: r.weight != 0)
        while group:
            total = sum(r.weight for r in group)
            pick = rng.randint(0, total)
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= pick:
                    ordered.append(group.pop(index))
                    break
    return ordered


@dataclass(frozen=True, slots=True)
class Target:
    """One address to send a gateway's INVITE to."""

    name: str  # the name it was found under (the gateway's host, or an SRV target)
    address: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Plan:
    """The targets of a gateway in order; or the queries still needed; or why none."""

    targets: tuple[Target, ...] = ()
    missing: tuple[Query, ...] = ()
    failure: str = ""
    queries: tuple[Query, ...] = ()  # every query this plan rests on (kept fresh)
    stale: bool = False  # rests on an answer past its TTL (the DNS is unreachable)

    @property
    def complete(self) -> bool:
        return not self.missing


@functools.lru_cache(maxsize=4096)
def ip_plan(address: str, port: int) -> Plan:
    """The plan of a gateway given by address: the same (immutable) one every attempt."""
    return Plan(targets=(Target(address, address, port),))


def _name(text: str) -> str:
    return text.rstrip(".").lower()


class _Walk:
    """One pass over the cache for a gateway, collecting what is known and missing."""

    def __init__(self, cache: DnsCache, now: float, families: tuple[str, ...]) -> None:
        self.cache, self.now, self.families = cache, now, families
        self.missing: list[Query] = []
        self.queries: list[Query] = []
        self.reasons: list[str] = []
        self.stale = False

    def look(self, query: Query) -> Entry | None:
        self.queries.append(query)
        entry = self.cache.answer(query, self.now)
        if entry is None:
            self.missing.append(query)
        elif self.now >= entry.expires_at:
            self.stale = True
        elif not entry.records and entry.reason:
            self.reasons.append(entry.reason)
        return entry

    def addresses(self, name: str) -> list[str] | None:
        found: list[str] = []
        known = True
        for family in self.families:
            entry = self.look((name, family))
            if entry is None:
                known = False
            else:
                found += [r for r in entry.records if isinstance(r, str)]
        return found if known else None

    def plan(self, targets: list[Target], failure: str) -> Plan:
        if self.missing:
            return Plan(missing=tuple(dict.fromkeys(self.missing)),
                        queries=tuple(self.queries))
        queries = tuple(dict.fromkeys(self.queries))
        if not targets:
            why = f" ({', '.join(dict.fromkeys(self.reasons))})" if self.reasons else ""
            return Plan(failure=failure + why, queries=queries, stale=self.stale)
        return Plan(targets=tuple(targets), queries=queries, stale=self.stale)


def plan_targets(host: str, port: int | None, transport: str, cache: DnsCache, now: float,
                 rng: random.Random, families: tuple[str, ...] = ("A",)) -> Plan:
    """The targets of a gateway at ``host`` (port None: not configured), from the cache."""
    if is_ip(host):
        return ip_plan(host, port or DEFAULT_PORT)
    host = _name(host)
    walk = _Walk(cache, now, families)
    failure = f"no address for {host}"
    if port is not None:
        found = walk.addresses(host)
        return walk.plan([Target(host, a, port) for a in found or ()], failure)
    naptr = walk.look((host, "NAPTR"))
    if naptr is None:
        return walk.plan([], failure)
    service = _NAPTR_SERVICE.get(transport, "")
    chosen = sorted((r for r in naptr.records if isinstance(r, Naptr)
                     and r.service.upper() == service and r.flags.lower() == "s"),
                    key=lambda r: (r.order, r.preference))
    # RFC 3263 4.1: with usable NAPTR records, their SRV names; else the default one.
    srv_names = [_name(r.replacement) for r in chosen] or [f"_sip._{transport}.{host}"]
    for srv_name in srv_names:
        entry = walk.look((srv_name, "SRV"))
        if entry is None:
            return walk.plan([], failure)
        records = [r for r in entry.records if isinstance(r, Srv)]
        if not records:
            continue
        if len(records) == 1 and _name(records[0].target) == "":
            return walk.plan([], f"no SIP service at {host} (SRV target '.')")
        targets: list[Target] = []
        for srv in order_srv(records, rng):
            target = _name(srv.target)
            for address in walk.addresses(target) or ():
                targets.append(Target(target, address, srv.port))
        return walk.plan(targets, failure)
    found = walk.addresses(host)
    return walk.plan([Target(host, a, DEFAULT_PORT) for a in found or ()], failure)
