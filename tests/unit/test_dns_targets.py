"""Vendor resolution (RFC 3263) as pure decisions: ordering, weights, TTLs, stale answers,
and which queries a gateway needs, with a fake clock and fake answers."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from b2bua.routing.dns import (
    NEGATIVE_TTL,
    RETRY_DELAY,
    STALE_LIMIT,
    DnsCache,
    Naptr,
    Plan,
    Query,
    Record,
    Srv,
    is_hostname,
    order_srv,
    plan_targets,
)

RNG = random.Random(7)


def plan(cache: DnsCache, host: str = "vendor.test", port: int | None = None,
         transport: str = "udp", now: float = 0.0) -> Plan:
    return plan_targets(host, port, transport, cache, now, RNG)


def answers(cache: DnsCache, zone: dict[Query, tuple[Record, ...]], now: float = 0.0,
            ttl: float = 300.0) -> None:
    """Answer every query a plan asks for from ``zone`` (absent: no such name)."""
    for _ in range(5):
        wanted = plan(cache, now=now).missing
        if not wanted:
            return
        for query in wanted:
            cache.store(query, zone.get(query, ()), ttl, now, "" if query in zone
                        else "no such name")


def addresses(p: Plan) -> list[str]:
    return [str(t) for t in p.targets]


# -- which queries: port or not, NAPTR, SRV, A -------------------------------------------

def test_ip_host_needs_no_dns_and_keeps_its_port() -> None:
    cache = DnsCache()
    assert addresses(plan(cache, "192.0.2.7", 5070)) == ["192.0.2.7:5070"]
    assert addresses(plan(cache, "192.0.2.7", None)) == ["192.0.2.7:5060"]
    assert addresses(plan(cache, "2001:db8::1", 5060)) == ["[2001:db8::1]:5060"]
    assert cache.entries == {}


def test_name_with_port_asks_only_for_addresses() -> None:
    cache = DnsCache()
    first = plan(cache, port=5080)
    assert first.missing == (("vendor.test", "A"),)
    cache.store(("vendor.test", "A"), ("192.0.2.1", "192.0.2.2"), 60, 0)
    assert addresses(plan(cache, port=5080)) == ["192.0.2.1:5080", "192.0.2.2:5080"]


def test_name_without_port_asks_naptr_then_srv_then_addresses() -> None:
    cache = DnsCache()
    assert plan(cache).missing == (("vendor.test", "NAPTR"),)
    cache.store(("vendor.test", "NAPTR"), (), 60, 0, "no records")
    assert plan(cache).missing == (("_sip._udp.vendor.test", "SRV"),)
    cache.store(("_sip._udp.vendor.test", "SRV"),
                (Srv(10, 0, 5070, "a.vendor.test."), Srv(20, 0, 5071, "b.vendor.test.")), 60, 0)
    # Both targets' addresses are asked for at once.
    assert plan(cache).missing == (("a.vendor.test", "A"), ("b.vendor.test", "A"))
    cache.store(("a.vendor.test", "A"), ("192.0.2.1",), 60, 0)
    cache.store(("b.vendor.test", "A"), ("192.0.2.2",), 60, 0)
    done = plan(cache)
    assert addresses(done) == ["192.0.2.1:5070", "192.0.2.2:5071"]
    assert [t.name for t in done.targets] == ["a.vendor.test", "b.vendor.test"]


def test_tcp_gateway_asks_for_the_tcp_srv_name() -> None:
    cache = DnsCache()
    cache.store(("vendor.test", "NAPTR"), (), 60, 0, "no records")
    assert plan(cache, transport="tcp").missing == (("_sip._tcp.vendor.test", "SRV"),)


def test_naptr_for_the_transport_names_the_srv_record() -> None:
    cache = DnsCache()
    zone: dict[Query, tuple[Record, ...]] = {
        ("vendor.test", "NAPTR"): (
            Naptr(10, 50, "s", "SIP+D2T", "_sip._tcp.other.test."),
            Naptr(20, 50, "s", "SIP+D2U", "_sip._udp.other.test."),
        ),
        ("_sip._udp.other.test", "SRV"): (Srv(0, 0, 5999, "x.other.test."),),
        ("x.other.test", "A"): ("192.0.2.9",),
    }
    answers(cache, zone)
    assert addresses(plan(cache)) == ["192.0.2.9:5999"]
    assert ("_sip._udp.vendor.test", "SRV") not in cache.entries


def test_no_srv_falls_back_to_addresses_at_5060() -> None:
    cache = DnsCache()
    answers(cache, {("vendor.test", "A"): ("192.0.2.5",)})
    assert addresses(plan(cache)) == ["192.0.2.5:5060"]


def test_unknown_name_is_a_failure_with_the_reason() -> None:
    cache = DnsCache()
    answers(cache, {})
    result = plan(cache)
    assert result.complete and not result.targets
    assert result.failure == "no address for vendor.test (no such name)"


def test_srv_target_dot_means_no_service() -> None:
    cache = DnsCache()
    answers(cache, {("_sip._udp.vendor.test", "SRV"): (Srv(0, 0, 0, "."),)})
    assert "no SIP service" in plan(cache).failure


def test_srv_target_without_address_is_skipped() -> None:
    cache = DnsCache()
    answers(cache, {
        ("_sip._udp.vendor.test", "SRV"): (Srv(1, 0, 5070, "gone.test."),
                                           Srv(2, 0, 5071, "b.test.")),
        ("b.test", "A"): ("192.0.2.2",),
    })
    assert addresses(plan(cache)) == ["192.0.2.2:5071"]


@pytest.mark.parametrize(("host", "ok"), [
    ("sip.example.net", True), ("vendor.test", True), ("localhost", True),
    ("sip.example.net.", True), ("a-b.c", True), ("10.0.0", False), ("-a.test", False),
    ("a..test", False), ("a b.test", False), ("", False), ("192.0.2.1", False),
    ("x" * 64 + ".test", False), ("sip_1.test", False),
])
def test_hostname_validation(host: str, ok: bool) -> None:
    assert is_hostname(host) is ok


# -- RFC 2782 ordering --------------------------------------------------------------------

def test_priority_orders_before_weight() -> None:
    records = [Srv(20, 100, 1, "c"), Srv(10, 1, 1, "a"), Srv(10, 1, 1, "b"), Srv(30, 0, 1, "d")]
    for seed in range(50):
        order = [r.target for r in order_srv(records, random.Random(seed))]
        assert set(order[:2]) == {"a", "b"} and order[2:] == ["c", "d"]


def test_weights_share_first_place_in_proportion() -> None:
    rng = random.Random(2782)
    records = [Srv(10, 60, 1, "a"), Srv(10, 30, 1, "b"), Srv(10, 10, 1, "c")]
    draws = 20000
    first = Counter(order_srv(records, rng)[0].target for _ in range(draws))
    for target, share in (("a", 0.6), ("b", 0.3), ("c", 0.1)):
        assert abs(first[target] / draws - share) < 0.02, first


def test_zero_weight_is_rarely_first_but_always_listed() -> None:
    rng = random.Random(1)
    records = [Srv(10, 0, 1, "zero"), Srv(10, 100, 1, "heavy")]
    draws = 10000
    first = Counter(order_srv(records, rng)[0].target for _ in range(draws))
    # RFC 2782: a zero weight has a very small chance (1 in sum+1 here).
    assert first["zero"] / draws < 0.03, first
    assert all(len(order_srv(records, rng)) == 2 for _ in range(100))


def test_plans_spread_calls_by_weight() -> None:
    cache = DnsCache()
    answers(cache, {
        ("_sip._udp.vendor.test", "SRV"): (Srv(1, 75, 5070, "a.test."),
                                           Srv(1, 25, 5070, "b.test.")),
        ("a.test", "A"): ("192.0.2.1",), ("b.test", "A"): ("192.0.2.2",),
    })
    first = Counter(plan(cache).targets[0].address for _ in range(4000))
    assert abs(first["192.0.2.1"] / 4000 - 0.75) < 0.04, first


# -- TTL, refresh, stale ------------------------------------------------------------------

def test_answer_lives_for_its_ttl_and_is_refreshed_before_expiry() -> None:
    cache = DnsCache()
    query = ("vendor.test", "A")
    cache.store(query, ("192.0.2.1",), 100, now=1000)
    assert not cache.due(query, 1079)
    assert cache.due(query, 1080)  # 80 % of the TTL gone: refresh in the background
    assert cache.answer(query, 1099.9) is not None
    # Past its TTL it is still served, marked stale, until a new answer replaces it.
    assert cache.answer(query, 1100) is not None
    assert plan(cache, port=5060, now=1100).stale
    assert cache.answer(query, 1100 + STALE_LIMIT) is None


def test_negative_answers_are_cached_briefly() -> None:
    cache = DnsCache()
    query = ("vendor.test", "NAPTR")
    cache.store(query, (), 3600, now=0, reason="no records")
    assert not cache.due(query, NEGATIVE_TTL * 0.8 - 1)
    assert cache.due(query, NEGATIVE_TTL * 0.8)  # asked again within the minute


def test_stale_answer_served_while_the_dns_is_unreachable() -> None:
    cache = DnsCache()
    answers(cache, {("vendor.test", "A"): ("192.0.2.1",)}, now=0, ttl=10)
    fresh = plan(cache, now=5)
    assert addresses(fresh) == ["192.0.2.1:5060"] and not fresh.stale
    expired = plan(cache, now=11)
    assert not expired.missing and expired.stale  # served at once; refreshed meanwhile
    due = [q for q in expired.queries if cache.due(q, 11)]
    assert len(due) == 3  # NAPTR, SRV, A: every step of the chain
    for query in due:
        cache.fail(query, "DNS timeout", now=11)
    late = plan(cache, now=12)
    assert addresses(late) == ["192.0.2.1:5060"] and late.stale
    # No query before the retry pause is over; then one is tried again.
    query = ("vendor.test", "A")
    assert not cache.due(query, 11 + RETRY_DELAY - 0.1)
    assert cache.due(query, 11 + RETRY_DELAY)
    assert plan(cache, now=10 + STALE_LIMIT - 1).targets
    assert plan(cache, now=10 + STALE_LIMIT + 1).missing  # too old even as a fallback


def test_refresh_that_says_no_such_name_replaces_the_answer() -> None:
    cache = DnsCache()
    query = ("vendor.test", "A")
    cache.store(query, ("192.0.2.1",), 10, now=0)
    cache.store(query, (), 10, now=9, reason="no such name")
    entry = cache.answer(query, 9.5)
    assert entry is not None and entry.records == ()


def test_cold_failure_fails_fast_then_retries() -> None:
    cache = DnsCache()
    query = ("vendor.test", "A")
    cache.fail(query, "DNS timeout", now=0)
    failed = plan(cache, port=5060, now=1)
    assert failed.failure == "no address for vendor.test (DNS timeout)"
    assert plan(cache, port=5060, now=RETRY_DELAY).missing == (query,)


def test_prune_keeps_only_what_gateways_need() -> None:
    cache = DnsCache()
    cache.store(("a.test", "A"), ("192.0.2.1",), 60, 0)
    cache.store(("b.test", "A"), ("192.0.2.2",), 60, 0)
    cache.prune({("a.test", "A")})
    assert list(cache.entries) == [("a.test", "A")]
